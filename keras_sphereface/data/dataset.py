"""The `tf.data` input pipeline: TFRecords written by `records.py` -> `(images, labels)` batches.

Order of work (each stage parallel where it can be):
    files (shuffled per epoch) -> shard per input pipeline -> parallel interleave of shards,
    each shard read, parsed and decoded (optionally aligned on the fly from stored landmarks)
    -> record check (a bad record, or a label outside `[0, num_classes)`, stops the pipeline with
    an error naming its file and index)
    -> optional cache -> shuffle buffer -> batch -> augmentation and normalisation per batch
    -> prefetch.
"""

from __future__ import annotations

import json
import os

import tensorflow as tf

from keras_sphereface.data.align import get_template
from keras_sphereface.data.records import LABELS_NAME, MANIFEST_NAME
from keras_sphereface.data.schema import make_example, parse_spec
from keras_sphereface.models.preprocessing import PIXEL_MEAN, PIXEL_SCALE

AUTOTUNE = tf.data.AUTOTUNE

_STATUS_MESSAGES = (
    "ok",
    "shape mismatch: the decoded image does not have the expected (height, width); write the "
    "records with --resize or pass image_size / align=True",
    "no landmarks stored in this record, so it cannot be aligned on the fly",
    "corrupt or undecodable record (TFRecord framing/CRC, Example proto or image bytes)",
    "label out of range (the records were written for another label set, or are corrupt)",
)
_OK, _SHAPE_MISMATCH, _NO_LANDMARKS, _CORRUPT, _BAD_LABEL = range(5)


def decode_image_tf(data: tf.Tensor) -> tf.Tensor:
    """JPEG or PNG bytes -> `uint8` `(height, width, 3)` RGB, bit-identical to OpenCV's decoding.

    TensorFlow's default JPEG IDCT is libjpeg's fast integer one; OpenCV (and so `align`, the
    evaluation crops and the reference model) uses the accurate one, hence `INTEGER_ACCURATE`.
    """
    return tf.cond(
        tf.io.is_jpeg(data),
        lambda: tf.io.decode_jpeg(data, channels=3, dct_method="INTEGER_ACCURATE"),
        lambda: tf.io.decode_png(data, channels=3),
    )


def similarity_transform_tf(src: tf.Tensor, dst: tf.Tensor) -> tf.Tensor:
    """Least-squares similarity transform in TensorFlow (same closed form as `align.similarity_transform`).

    Args:
        src: `float32` tensor `(5, 2)`. Landmarks `(x, y)` in the source image.
        dst: `float32` tensor `(5, 2)`. Template points in the output image.

    Returns:
        `float32` tensor `(4,)`: `(a, b, tx, ty)` of `[[a, -b, tx], [b, a, ty]]`.
    """
    src_mean = tf.reduce_mean(src, axis=0)
    dst_mean = tf.reduce_mean(dst, axis=0)
    p, q = src - src_mean, dst - dst_mean
    norm = tf.reduce_sum(p * p)
    a = tf.reduce_sum(p[:, 0] * q[:, 0] + p[:, 1] * q[:, 1]) / norm
    b = tf.reduce_sum(p[:, 0] * q[:, 1] - p[:, 1] * q[:, 0]) / norm
    tx = dst_mean[0] - (a * src_mean[0] - b * src_mean[1])
    ty = dst_mean[1] - (b * src_mean[0] + a * src_mean[1])
    return tf.stack([a, b, tx, ty])


def warp_to_template(
    image: tf.Tensor, landmarks: tf.Tensor, template: tf.Tensor, size: tuple[int, int],
    interpolation: str = "bilinear",
) -> tf.Tensor:
    """Aligns one image in TensorFlow, with the same pixel conventions as `align.align_face`.

    Args:
        image: `uint8` tensor `(height, width, 3)`.
        landmarks: `float32` tensor `(5, 2)` in pixels of `image` (pixel centres at integers).
        template: `float32` tensor `(5, 2)` in output pixels.
        size: tuple `(height, width)` of the output.
        interpolation: str. `"bilinear"` or `"nearest"`.

    Returns:
        `uint8` tensor `(size[0], size[1], 3)`; black outside the source image.
    """
    a, b, tx, ty = tf.unstack(similarity_transform_tf(landmarks, template))
    # ImageProjectiveTransform maps each output pixel to the input: use the inverse transform.
    det = a * a + b * b
    ia, ib = a / det, b / det
    itx = -(ia * tx + ib * ty)
    ity = -(-ib * tx + ia * ty)
    transform = tf.stack([ia, ib, itx, -ib, ia, ity, 0.0, 0.0])[None, :]
    warped = tf.raw_ops.ImageProjectiveTransformV3(
        images=tf.cast(image, tf.float32)[None],
        transforms=transform,
        output_shape=tf.constant(size, tf.int32),
        fill_value=0.0,
        interpolation=interpolation.upper(),
        fill_mode="CONSTANT",
    )[0]
    return tf.cast(tf.clip_by_value(tf.round(warped), 0.0, 255.0), tf.uint8)


def _end_marker(height: int, width: int, template_points) -> bytes:
    """A valid record (black image, template landmarks) appended to each shard when checking."""
    black = tf.io.encode_png(tf.zeros((height, width, 3), tf.uint8)).numpy()
    return make_example(black, -1, "", "<end of file>", height, width, landmarks=template_points.numpy())


def _label_range_text(num_classes: int) -> str:
    """How the error messages state the labels expected (`num_classes` -1: unknown)."""
    if num_classes < 0:
        return "expected a label >= 0 (num_classes unknown: no labels.json beside the shards)"
    return f"expected 0 <= label < num_classes = {num_classes}"


def _per_file(filename, file_seed, decode_fn, parallel, check_records, end_marker=b"", num_classes=-1):
    """One shard's examples `(image, label, False)`, decoded; with `check_records`, bad records raise.

    `decode_fn(record, is_end, seed)` gets a per-record stateless seed `(file_seed, index)`;
    `file_seed` is drawn anew for every file in every epoch. `num_classes` (-1: unknown) is only
    used in messages; without `check_records`, labels are still checked (cheaply, per record).
    """
    records = tf.data.TFRecordDataset(filename)
    parallelism = {} if parallel is None else {"num_parallel_calls": parallel, "deterministic": True}
    if not check_records:
        return records.enumerate().map(
            lambda index, record: _label_checked(filename, index, num_classes,
                                                 *decode_fn(record, False, tf.stack([file_seed, index]))),
            **parallelism,
        )
    # An end marker after the last record lets `_check` see a bad last record.
    marked = records.map(lambda r: (r, False)).concatenate(
        tf.data.Dataset.from_tensors((tf.constant(end_marker), True))
    )
    decoded = marked.enumerate().map(
        lambda index, item: (filename, index, *decode_fn(item[0], item[1], tf.stack([file_seed, index]))),
        **parallelism,
    )
    # A record that fails to read or decode is dropped here and found by `_check` as a gap in
    # the indices, so the error can name the file and record (TensorFlow's own errors do not).
    checked = decoded.ignore_errors().scan(tf.constant(0, tf.int64),
                                           lambda expected, element: _check(expected, element, num_classes))
    return checked.filter(lambda image, label, end: tf.logical_not(end))


def _label_checked(filename, index, num_classes, image, label, status, shape, is_end):
    """Without the full record check: still refuse a label out of range, naming file and record."""
    check = tf.debugging.Assert(
        tf.not_equal(status, _BAD_LABEL),
        ["keras_sphereface: bad TFRecord file", filename, "record (0-based)", index,
         _STATUS_MESSAGES[_BAD_LABEL], "label", label, _label_range_text(num_classes)],
        summarize=8,
    )
    with tf.control_dependencies([check]):
        return tf.identity(image), label, is_end


def _check(expected, element, num_classes=-1):
    """Scan step: raises, naming file and record, at a gap in the indices or a bad status."""
    filename, index, image, label, status, shape, is_end = element
    gap = tf.not_equal(index, expected)
    problem = tf.where(gap, _CORRUPT, status)
    check = tf.debugging.Assert(
        tf.equal(problem, _OK),
        ["keras_sphereface: bad TFRecord file", filename, "record (0-based)", tf.minimum(index, expected),
         tf.gather(tf.constant(_STATUS_MESSAGES), problem), "decoded image shape", shape,
         "label", label, _label_range_text(num_classes)],
        summarize=8,
    )
    with tf.control_dependencies([check]):
        next_expected = index + 1
    return next_expected, (image, label, is_end)


def tfrecord_dataset(
    pattern: str | list[str],
    batch_size: int,
    training: bool = True,
    image_size: tuple[int, int] = (112, 96),
    align: bool = False,
    template: str = "sphereface",
    flip: bool = True,
    brightness: float = 0.0,
    contrast: float = 0.0,
    normalization: tuple[float, float] | None = (PIXEL_MEAN, PIXEL_SCALE),
    shuffle_buffer: int = 8192,
    seed: int | None = None,
    cache: bool | str = False,
    drop_remainder: bool | None = None,
    input_context: tf.distribute.InputContext | None = None,
    num_parallel_calls: int = AUTOTUNE,
    cycle_length: int | None = None,
    check_records: bool = True,
    num_classes: int | None = None,
) -> tf.data.Dataset:
    """A `tf.data.Dataset` of `(images, labels)` batches from TFRecords of `write_tfrecords`.

    Args:
        pattern: str or list of str. Glob pattern(s) of shards, e.g. `"out/train-*.tfrecord"`.
        batch_size: int. The global batch size; with `input_context`, each pipeline yields
            `input_context.get_per_replica_batch_size(batch_size)`.
        training: bool. Shuffle files and examples, augment, drop the last partial batch.
            False: file order, no augmentation, the last partial batch is kept.
        image_size: tuple `(height, width)`. Output size; without `align`, stored images must
            already have it (else the error names file and record).
        align: bool. Align on the fly with the stored landmarks (for records of original
            photos); `template` and `image_size` choose the template.
        template: str. `"sphereface"` or `"arcface"`.
        flip: bool. Random horizontal flip when training (as in the SphereFace paper).
        brightness: float. Off (0) by default; else a random brightness offset in
            `[-brightness, brightness]` (0-255 pixel units) when training.
        contrast: float. Off (0) by default; else a random contrast factor in
            `[1 - contrast, 1 + contrast]` when training.
        normalization: tuple `(mean, scale)` or None. Output `(x - mean) / scale`; the default
            `(PIXEL_MEAN, PIXEL_SCALE)` is every zoo model's `preprocess_input` (`(x - 127.5) / 128`,
            the paper's); None gives `float32` pixels in `[0, 255]`.
        shuffle_buffer: int. Examples in the shuffle buffer (training).
        seed: int or None. With a seed, the whole output (order, flips) is deterministic.
        cache: bool or str. Cache decoded images in memory (True) or in a file (a path).
        drop_remainder: bool or None. Default: True when training.
        input_context: `tf.distribute.InputContext` or None. As given by
            `strategy.distribute_datasets_from_function`: shards files per input pipeline.
        num_parallel_calls: int. Parallelism of reading and decoding (default AUTOTUNE).
        cycle_length: int or None. Shards read at once; default twice the CPU count, at most 16
            (on 2 cores, 4 shards beat 16 by about 7%).
        check_records: bool. Detect bad records and name them (default). False skips the
            check, which is a little faster, and leaves TensorFlow's own error messages (labels
            are still checked).
        num_classes: int or None. Labels must lie in `[0, num_classes)`: a record outside stops
            the pipeline with an error naming its file, record, label and the range (on a GPU an
            out-of-range label would otherwise train silently wrong: its gather returns zeros).
            Pass the classifier head's `units`. None: read from the `labels.json` (or
            `manifest.json`) beside the shards (`read_num_classes`); negative labels are refused
            in any case.

    Returns:
        `tf.data.Dataset` of `(images, labels)`: `float32` `(batch, height, width, 3)` RGB and
        `int32` `(batch,)`.

    Raises:
        ValueError: no file matches, every file is empty, a shard whose size differs from the
            `manifest.json` beside it, fewer examples than one batch (per the manifest) when the
            last partial batch is dropped, fewer files than input pipelines, or bad arguments.
    """
    files = _match_files(pattern)
    if batch_size < 1:
        raise ValueError(f"batch_size must be a positive integer. Received: batch_size={batch_size}")
    if num_classes is None:
        num_classes = read_num_classes(files)
    elif int(num_classes) < 1:
        raise ValueError(f"num_classes must be a positive integer. Received: num_classes={num_classes}")
    label_limit = -1 if num_classes is None else int(num_classes)
    counted = _check_shard_files(files)
    height, width = (int(v) for v in image_size)
    if normalization is not None and float(normalization[1]) == 0.0:
        raise ValueError(f"normalization scale must not be 0. Received: normalization={normalization}")
    if drop_remainder is None:
        drop_remainder = training
    if drop_remainder and counted is not None and counted < batch_size:
        raise ValueError(
            f"The {len(files)} TFRecord file(s) hold {counted} examples (per their manifest.json), fewer than "
            f"one batch of {batch_size}, and the last partial batch is dropped: nothing would come out. "
            f"Use a smaller batch_size or drop_remainder=False. Received: pattern={pattern!r}"
        )
    if input_context is not None:
        if len(files) < input_context.num_input_pipelines:
            raise ValueError(
                f"{len(files)} TFRecord file(s) cannot be split over {input_context.num_input_pipelines} "
                f"input pipelines; write more shards. Received: pattern={pattern!r}"
            )
        batch_size = input_context.get_per_replica_batch_size(batch_size)
    template_points = tf.constant(get_template(template, (height, width)), tf.float32)
    spec = parse_spec(("image", "label", "landmarks"))

    augment_options = {"flip": flip, "brightness": brightness, "contrast": contrast}
    augmenting = training and (flip or brightness or contrast)
    # Augmentation is fused into decoding (cheapest), except when decoded images are cached:
    # then it must come after the cache, or every epoch would see the same flips.
    fuse_augmentation = augmenting and not cache

    def decode(record, is_end, record_seed):
        def real():
            example = tf.io.parse_single_example(record, spec)
            image = decode_image_tf(example["image"])
            shape = tf.shape(image)
            label64 = example["label"]
            label = tf.cast(label64, tf.int32)
            if align:
                points = tf.reshape(example["landmarks"], (5, 2))
                has_points = tf.reduce_all(tf.math.is_finite(points))
                safe = tf.where(has_points, points, template_points)
                out = warp_to_template(image, safe, template_points, (height, width))
                status = tf.where(has_points, _OK, _NO_LANDMARKS)
            else:
                fits = tf.logical_and(tf.equal(shape[0], height), tf.equal(shape[1], width))
                out = tf.cond(fits, lambda: image, lambda: tf.zeros((height, width, 3), tf.uint8))
                status = tf.where(fits, _OK, _SHAPE_MISMATCH)
            label_ok = label64 >= 0 if label_limit < 0 else tf.logical_and(label64 >= 0, label64 < label_limit)
            bad_label = tf.logical_and(tf.logical_not(is_end), tf.logical_not(label_ok))
            status = tf.where(tf.logical_and(tf.equal(status, _OK), bad_label), _BAD_LABEL, status)
            out = tf.ensure_shape(out, (height, width, 3))
            if fuse_augmentation:
                out = _augment(out, record_seed, **augment_options)
            return out, label, status, shape

        # The end-of-file marker is a valid record too (see `_end_marker`): no branch needed.
        return (*real(), is_end)

    marker = _end_marker(height, width, template_points) if check_records else b""
    files_ds = tf.data.Dataset.from_tensor_slices(files)
    if input_context is not None:
        files_ds = files_ds.shard(input_context.num_input_pipelines, input_context.input_pipeline_id)
    if training:
        files_ds = files_ds.shuffle(len(files), seed=seed, reshuffle_each_iteration=True)
    files_ds = tf.data.Dataset.zip(files_ds, _random_seeds(seed))
    deterministic = seed is not None or not training
    # Shards are decoded in parallel by the interleave; a record-level parallel map inside each
    # shard is only worth its threads when there are few shards.
    per_file_parallel = num_parallel_calls if len(files) < 4 else None
    examples = files_ds.interleave(
        lambda f, file_seed: _per_file(f, file_seed, decode, per_file_parallel, check_records, marker,
                                       label_limit),
        cycle_length=min(len(files), cycle_length or min(16, 2 * (os.cpu_count() or 1))),
        block_length=1,
        num_parallel_calls=num_parallel_calls,
        deterministic=deterministic,
    )
    if cache:
        examples = examples.cache("" if cache is True else str(cache))
    if training:
        examples = examples.shuffle(shuffle_buffer, seed=seed, reshuffle_each_iteration=True)
    if augmenting and not fuse_augmentation:
        examples = tf.data.Dataset.zip(examples, _random_seeds(None if seed is None else seed + 1)).map(
            lambda example, element_seed: (
                _augment(example[0], tf.stack([element_seed, 0]), **augment_options), *example[1:]
            ),
            num_parallel_calls=num_parallel_calls, deterministic=deterministic,
        )
    batches = examples.batch(batch_size, drop_remainder=drop_remainder, num_parallel_calls=num_parallel_calls,
                             deterministic=deterministic)
    mean, scale = (0.0, 1.0) if normalization is None else (float(normalization[0]), float(normalization[1]))
    # Elements still carry the end-of-file flag (always False here); it is dropped per batch.
    batches = batches.map(lambda images, labels, _: ((tf.cast(images, tf.float32) - mean) / scale, labels),
                          num_parallel_calls=num_parallel_calls, deterministic=deterministic)
    return batches.prefetch(AUTOTUNE)


def _match_files(pattern: str | list[str]) -> list[str]:
    patterns = [pattern] if isinstance(pattern, str) else list(pattern)
    files = sorted({f for p in patterns for f in tf.io.gfile.glob(p)})
    if not files:
        raise ValueError(f"No TFRecord file matches the pattern. Received: pattern={pattern!r}")
    return files


def _read_json(path: str) -> dict:
    try:
        with tf.io.gfile.GFile(path, "r") as handle:
            value = json.load(handle)
    except (OSError, ValueError, tf.errors.OpError) as error:
        raise ValueError(f"Cannot read {path} ({type(error).__name__}: {error}); it was written by "
                         f"`ksf make-tfrecords`: write the records again or remove it.") from None
    if not isinstance(value, dict):
        raise ValueError(f"{path} is not a JSON object as `ksf make-tfrecords` writes. Received: "
                         f"{type(value).__name__}")
    return value


def read_num_classes(pattern: str | list[str]) -> int | None:
    """The number of classes of TFRecords written by `write_tfrecords`, from the files beside them.

    Looks in each folder holding a matching shard for `labels.json` (else `manifest.json`) and
    reads its `num_classes` (all splits together: validation labels follow the training ones).

    Args:
        pattern: str or list of str. Glob pattern(s) of shards, or the shard paths.

    Returns:
        int, or None when no folder has either file.

    Raises:
        ValueError: no file matches, an unreadable labels/manifest file, or folders that disagree
            (labels from different runs: pass `num_classes` explicitly, or rewrite the records).
    """
    found: dict[str, int] = {}
    for folder in sorted({os.path.dirname(f) for f in _match_files(pattern)}):
        for name in (LABELS_NAME, MANIFEST_NAME):
            path = os.path.join(folder, name)
            if tf.io.gfile.exists(path):
                value = _read_json(path).get("num_classes")
                if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                    raise ValueError(f"{path} has no valid num_classes. Received: num_classes={value!r}")
                found[path] = value
                break
    if len(set(found.values())) > 1:
        raise ValueError(f"The shards' folders disagree on the number of classes; their labels come from "
                         f"different runs. Pass num_classes explicitly or write the records together. "
                         f"Received: {found}")
    return next(iter(found.values()), None)


def _check_shard_files(files: list[str]) -> int | None:
    """Checks sizes against the `manifest.json` beside each shard; returns the examples it counts.

    Returns the total `num_examples` of the files when the manifests list every one of them,
    else None. Raises ValueError for a shard whose size differs from its manifest's (truncated,
    or replaced without rewriting the manifest) and when every file is empty.
    """
    manifests: dict[str, dict] = {}
    sizes, total, counted_all = [], 0, True
    for path in files:
        size = tf.io.gfile.stat(path).length
        sizes.append(size)
        folder = os.path.dirname(path)
        if folder not in manifests:
            manifest_path = os.path.join(folder, MANIFEST_NAME)
            manifest = _read_json(manifest_path) if tf.io.gfile.exists(manifest_path) else {}
            manifests[folder] = {
                shard.get("file"): shard
                for split in (manifest.get("splits") or {}).values() if isinstance(split, dict)
                for shard in split.get("shards", []) if isinstance(shard, dict)
            }
        entry = manifests[folder].get(os.path.basename(path))
        if entry is None:
            counted_all = False
            continue
        if entry.get("bytes") is not None and entry["bytes"] != size:
            raise ValueError(
                f"TFRecord file {path} has {size} bytes, the manifest.json beside it says {entry['bytes']} "
                f"({entry.get('num_examples')} examples): it was truncated or replaced. Write the records "
                f"again (`ksf make-tfrecords`), or delete manifest.json if you changed the shards on "
                f"purpose. Received: size={size}"
            )
        total += int(entry.get("num_examples") or 0)
    if not any(sizes):
        raise ValueError(f"All {len(files)} TFRecord file(s) are empty (0 bytes), so there is no example to "
                         f"read. Received: files={files[:3]}{'...' if len(files) > 3 else ''}")
    return total if counted_all else None


def _random_seeds(seed: int | None) -> tf.data.Dataset:
    """An endless stream of `int64` seeds, different in each epoch, reproducible given `seed`."""
    return tf.data.Dataset.random(seed=seed, rerandomize_each_iteration=True)


def _augment(image, seed, flip, brightness, contrast):
    """Per-image augmentation on `uint8` pixels, random but reproducible from a stateless seed."""
    draws = tf.random.stateless_uniform((3,), seed=seed)
    if flip:
        image = tf.cond(draws[0] < 0.5, lambda: tf.reverse(image, axis=[1]), lambda: image)
    if brightness or contrast:
        pixels = tf.cast(image, tf.float32)
        if contrast:
            mean = tf.reduce_mean(pixels)
            pixels = (pixels - mean) * (1.0 + contrast * (2.0 * draws[1] - 1.0)) + mean
        if brightness:
            pixels = pixels + brightness * (2.0 * draws[2] - 1.0)
        image = tf.cast(tf.round(tf.clip_by_value(pixels, 0.0, 255.0)), tf.uint8)
    return image
