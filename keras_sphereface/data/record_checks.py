"""Refuses bad TFRecords in the `tf.data` pipeline, with errors that name the shard and the record.

Before reading, `check_shard_files` compares each shard's size with the `manifest.json` beside it.
While reading, `read_shard` turns one shard into decoded examples: the decode function reports a
status per record (`STATUS_*`), and a record that TensorFlow cannot read shows up as a gap in the
record indices, so a truncated shard, a corrupt image, a missing landmark or a label outside
`[0, num_classes)` stops the pipeline with the file, the record and the reason.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import tensorflow as tf

from keras_sphereface.data.manifest import shard_entries
from keras_sphereface.data.schema import make_example

# A decoded record's status; index into _STATUS_MESSAGES.
STATUS_OK, STATUS_SHAPE_MISMATCH, STATUS_NO_LANDMARKS, STATUS_CORRUPT, STATUS_BAD_LABEL = range(5)
_STATUS_MESSAGES = (
    "ok",
    "shape mismatch: the decoded image does not have the expected (height, width); write the "
    "records with --resize or pass image_size / align='landmarks'",
    "no landmarks stored in this record, so it cannot be aligned on the fly",
    "corrupt or undecodable record (TFRecord framing/CRC, Example proto or image bytes)",
    "label out of range (the records were written for another label set, or are corrupt)",
)

#: `decode_fn(record, is_end, seed) -> (image, label, status, decoded_shape, is_end)`.
DecodeFn = Callable[[tf.Tensor, tf.Tensor, tf.Tensor], tuple]


def check_shard_files(files: Sequence[str]) -> int | None:
    """Checks shard sizes against the `manifest.json` beside each; returns the examples it counts.

    Args:
        files: sequence of str. The shard paths (any `tf.io.gfile` file system).

    Returns:
        int, the total `num_examples` of the files when the manifests list every one of them,
        else None.

    Raises:
        ValueError: a shard whose size differs from its manifest's (truncated, or replaced
            without rewriting the manifest), or every file is empty.
        keras_sphereface.data.manifest.ManifestError: an unreadable or invalid manifest.
    """
    entries = shard_entries(files)
    sizes = []
    for path, entry in entries.items():
        size = tf.io.gfile.stat(path).length
        sizes.append(size)
        if entry is not None and entry.get("bytes") is not None and entry["bytes"] != size:
            raise ValueError(
                f"TFRecord file {path} has {size} bytes, the manifest.json beside it says {entry['bytes']} "
                f"({entry['num_examples']} examples): it was truncated or replaced. Write the records "
                f"again (`ksf make-tfrecords`), or delete manifest.json if you changed the shards on "
                f"purpose. Received: size={size}"
            )
    if not any(sizes):
        raise ValueError(f"All {len(files)} TFRecord file(s) are empty (0 bytes), so there is no example to "
                         f"read. Received: files={list(files[:3])}{'...' if len(files) > 3 else ''}")
    if any(entry is None for entry in entries.values()):
        return None
    return sum(entry["num_examples"] for entry in entries.values())


def end_marker(height: int, width: int, template_points: tf.Tensor) -> bytes:
    """A valid record (black image, template landmarks) that `read_shard` appends to each shard."""
    black = tf.io.encode_png(tf.zeros((height, width, 3), tf.uint8)).numpy()
    return make_example(black, -1, "", "<end of file>", height, width, landmarks=template_points.numpy())


def _label_range_text(num_classes: int) -> str:
    """How the error messages state the labels expected (`num_classes` -1: unknown)."""
    if num_classes < 0:
        return "expected a label >= 0 (num_classes unknown: no labels.json beside the shards)"
    return f"expected 0 <= label < num_classes = {num_classes}"


def read_shard(filename: tf.Tensor, file_seed: tf.Tensor, decode_fn: DecodeFn, parallel: int | None,
               check_records: bool, marker: bytes = b"", num_classes: int = -1) -> tf.data.Dataset:
    """One shard's examples `(image, label, is_end)`, decoded; with `check_records`, bad records raise.

    Args:
        filename: `string` tensor. The shard.
        file_seed: `int64` tensor. Drawn anew for every file in every epoch; `decode_fn` gets
            the per-record stateless seed `(file_seed, index)`.
        decode_fn: `DecodeFn`. Parses and decodes one record and states its status.
        parallel: int or None. Parallelism of the per-record map (None: sequential).
        check_records: bool. Name every bad record (a gap in the indices, a bad status); False
            still refuses a label out of range (cheaply, per record).
        marker: bytes. `end_marker(...)`, appended so that a bad last record is seen too
            (needed with `check_records`).
        num_classes: int. Only used in messages; -1: unknown.

    Returns:
        `tf.data.Dataset` of `(image, label, is_end)`, `is_end` always False.
    """
    records = tf.data.TFRecordDataset(filename)
    parallelism = {} if parallel is None else {"num_parallel_calls": parallel, "deterministic": True}
    if not check_records:
        return records.enumerate().map(
            lambda index, record: _label_checked(filename, index, num_classes,
                                                 decode_fn(record, False, tf.stack([file_seed, index]))),
            **parallelism,
        )
    marked = records.map(lambda r: (r, False)).concatenate(
        tf.data.Dataset.from_tensors((tf.constant(marker), True))
    )
    decoded = marked.enumerate().map(
        lambda index, item: (filename, index, *decode_fn(item[0], item[1], tf.stack([file_seed, index]))),
        **parallelism,
    )
    # A record that fails to read or decode is dropped here and found by `_check` as a gap in
    # the indices, so the error can name the file and record (TensorFlow's own errors do not).
    checked = decoded.ignore_errors().scan(tf.constant(0, tf.int64),
                                           lambda expected, element: _check(expected, element, num_classes))
    return checked.filter(lambda _image, _label, is_end: tf.logical_not(is_end))


def _label_checked(filename, index, num_classes, decoded):
    """Without the full record check: still refuse a label out of range, naming file and record."""
    image, label, status, _, is_end = decoded
    check = tf.debugging.Assert(
        tf.not_equal(status, STATUS_BAD_LABEL),
        ["keras_sphereface: bad TFRecord file", filename, "record (0-based)", index,
         _STATUS_MESSAGES[STATUS_BAD_LABEL], "label", label, _label_range_text(num_classes)],
        summarize=8,
    )
    with tf.control_dependencies([check]):
        return tf.identity(image), label, is_end


def _check(expected, element, num_classes=-1):
    """Scan step: raises, naming file and record, at a gap in the indices or a bad status."""
    filename, index, image, label, status, shape, is_end = element
    gap = tf.not_equal(index, expected)
    problem = tf.where(gap, STATUS_CORRUPT, status)
    check = tf.debugging.Assert(
        tf.equal(problem, STATUS_OK),
        ["keras_sphereface: bad TFRecord file", filename, "record (0-based)", tf.minimum(index, expected),
         tf.gather(tf.constant(_STATUS_MESSAGES), problem), "decoded image shape", shape,
         "label", label, _label_range_text(num_classes)],
        summarize=8,
    )
    with tf.control_dependencies([check]):
        next_expected = index + 1
    return next_expected, (image, label, is_end)
