"""Bad TFRecords through `tfrecord_dataset`: each gives an error naming the file and record (or shard).

Records are written with `schema.make_example` from real LFW crops; each test damages one thing:
corrupt JPEG bytes, a truncated file, labels outside `[0, num_classes)`, empty shards, images of
the wrong size, a shard that no longer matches its manifest, fewer examples than one batch.
"""

from __future__ import annotations

import json
import re

import cv2
import pytest
import tensorflow as tf

from keras_sphereface.data.dataset import read_num_classes, tfrecord_dataset
from keras_sphereface.data.records import write_tfrecords
from keras_sphereface.data.schema import make_example

pytestmark = pytest.mark.tf_backend


def _jpeg(crop) -> bytes:
    return cv2.imencode(".jpg", cv2.cvtColor(crop, cv2.COLOR_RGB2BGR))[1].tobytes()


def _write(path, examples) -> str:
    """Writes `(jpeg bytes, label, (height, width))` examples into one TFRecord file; returns its path."""
    with tf.io.TFRecordWriter(str(path)) as writer:
        for index, (data, label, size) in enumerate(examples):
            writer.write(make_example(data, label, f"id{label}", f"id{label}/{index}.jpg", *size))
    return str(path)


def _record(message: str) -> int:
    """The record index an error message names: `... [record (0-based)] [3] ...`."""
    return int(re.search(r"\[record \(0-based\)\] \[(\d+)\]", message).group(1))


def _drain(dataset) -> int:
    return sum(int(labels.shape[0]) for _, labels in dataset)


def _error(pattern, **options) -> str:
    with pytest.raises(tf.errors.InvalidArgumentError) as info:
        _drain(tfrecord_dataset(pattern, 2, training=False, **options))
    return str(info.value)


@pytest.fixture(scope="module")
def jpegs(real_crops):
    return [_jpeg(crop) for _, crop in real_crops]


@pytest.fixture(scope="module")
def crop_tree(real_crops, tmp_path_factory):
    """A folder-per-identity tree of the real crops (3 identities), as `ksf align` writes it."""
    root = tmp_path_factory.mktemp("crops")
    for name, crop in real_crops:
        (root / name).parent.mkdir(exist_ok=True)
        (root / name).write_bytes(_jpeg(crop))
    return root


def test_good_records_pass(jpegs, tmp_path):
    path = _write(tmp_path / "good.tfrecord", [(data, i % 3, (112, 96)) for i, data in enumerate(jpegs)])
    assert _drain(tfrecord_dataset(path, 2, training=False, num_classes=3)) == len(jpegs)


def test_corrupt_jpeg_bytes_name_file_and_record(jpegs, tmp_path):
    broken = jpegs[1][:600] + b"\x00" * 64 + jpegs[1][-2:]  # JPEG markers kept, entropy data lost
    path = _write(tmp_path / "corrupt.tfrecord", [(jpegs[0], 0, (112, 96)), (broken, 1, (112, 96)),
                                                   (jpegs[2], 2, (112, 96))])
    message = _error(path)
    assert "corrupt.tfrecord" in message and "record (0-based)" in message
    assert "corrupt or undecodable record" in message
    assert _record(message) == 1


def test_truncated_file_names_file_and_record(jpegs, tmp_path):
    good = tmp_path / "good.tfrecord"
    _write(good, [(data, 0, (112, 96)) for data in jpegs[:4]])
    data = good.read_bytes()
    (tmp_path / "short.tfrecord").write_bytes(data[: len(data) - 100])
    message = _error(str(tmp_path / "short.tfrecord"))
    assert "short.tfrecord" in message and "corrupt or undecodable record" in message
    assert _record(message) == 3


@pytest.mark.parametrize("check_records", [True, False])
def test_label_at_or_above_num_classes_names_file_record_label_and_range(jpegs, tmp_path, check_records):
    path = _write(tmp_path / "labels.tfrecord", [(jpegs[0], 0, (112, 96)), (jpegs[1], 2, (112, 96)),
                                                  (jpegs[2], 3, (112, 96))])
    assert _drain(tfrecord_dataset(path, 2, training=False, num_classes=4, check_records=check_records)) == 3
    message = _error(path, num_classes=3, check_records=check_records)
    assert "labels.tfrecord" in message and "label out of range" in message
    assert _record(message) == 2
    assert "[label] [3] [expected 0 <= label < num_classes = 3]" in message


def test_negative_label_is_refused_without_num_classes(jpegs, tmp_path):
    path = _write(tmp_path / "negative.tfrecord", [(jpegs[0], 0, (112, 96)), (jpegs[1], -1, (112, 96))])
    message = _error(path)
    assert "negative.tfrecord" in message and "label out of range" in message
    assert "[label] [-1] [expected a label >= 0 (num_classes unknown" in message


def test_num_classes_defaults_to_the_labels_json_beside_the_shards(crop_tree, jpegs, tmp_path):
    out = tmp_path / "rec"
    write_tfrecords(crop_tree, out, num_shards=2)
    assert json.loads((out / "labels.json").read_text())["num_classes"] == 3
    assert read_num_classes(str(out / "train-*.tfrecord")) == 3
    assert _drain(tfrecord_dataset(str(out / "train-*.tfrecord"), 2, training=False)) == len(jpegs)
    # A shard of another label set dropped into the folder: label 5 of 3 classes.
    bad = _write(out / "train-extra.tfrecord", [(jpegs[0], 1, (112, 96)), (jpegs[1], 5, (112, 96))])
    message = _error(bad)
    assert "train-extra.tfrecord" in message and _record(message) == 1
    assert "[label] [5] [expected 0 <= label < num_classes = 3]" in message
    lone = tmp_path / "lone"
    lone.mkdir()
    assert read_num_classes(_write(lone / "a.tfrecord", [(jpegs[0], 7, (112, 96))])) is None


def test_labels_from_two_runs_disagree(crop_tree, tmp_path):
    write_tfrecords(crop_tree, tmp_path / "a", num_shards=1)
    write_tfrecords(crop_tree, tmp_path / "b", num_shards=1, min_images=2)
    labels = json.loads((tmp_path / "b" / "labels.json").read_text())
    labels["num_classes"] = 2
    (tmp_path / "b" / "labels.json").write_text(json.dumps(labels))
    with pytest.raises(ValueError, match="disagree on the number of classes"):
        tfrecord_dataset([str(tmp_path / "a" / "*.tfrecord"), str(tmp_path / "b" / "*.tfrecord")], 2)
    (tmp_path / "b" / "labels.json").write_text("{not json")
    with pytest.raises(ValueError, match=r"Cannot read .*labels.json"):
        read_num_classes(str(tmp_path / "b" / "*.tfrecord"))


def test_empty_shards(jpegs, tmp_path):
    (tmp_path / "empty-0.tfrecord").write_bytes(b"")
    (tmp_path / "empty-1.tfrecord").write_bytes(b"")
    with pytest.raises(ValueError, match=r"All 2 TFRecord file\(s\) are empty \(0 bytes\)"):
        tfrecord_dataset(str(tmp_path / "empty-*.tfrecord"), 2)
    # One empty shard among good ones (more shards than images) is fine: it adds nothing.
    _write(tmp_path / "empty-2.tfrecord", [(data, 0, (112, 96)) for data in jpegs])
    assert _drain(tfrecord_dataset(str(tmp_path / "empty-*.tfrecord"), 2, training=False)) == len(jpegs)


def test_more_shards_than_images_write_empty_shards_that_read(crop_tree, jpegs, tmp_path):
    manifest = write_tfrecords(crop_tree, tmp_path / "rec", num_shards=len(jpegs) + 2)
    sizes = [shard["num_examples"] for shard in manifest["splits"]["train"]["shards"]]
    assert sizes.count(0) == 2
    assert _drain(tfrecord_dataset(str(tmp_path / "rec" / "train-*"), 1, training=False)) == len(jpegs)


def test_shard_that_does_not_match_its_manifest(crop_tree, tmp_path):
    out = tmp_path / "rec"
    write_tfrecords(crop_tree, out, num_shards=2)
    shard = out / "train-00001-of-00002.tfrecord"
    data = shard.read_bytes()
    shard.write_bytes(data[: len(data) // 2])
    with pytest.raises(ValueError, match=rf"TFRecord file {shard} has {len(data) // 2} bytes, the manifest.json "
                                         rf"beside it says {len(data)} .*truncated or replaced"):
        tfrecord_dataset(str(out / "train-*.tfrecord"), 2)


def test_fewer_examples_than_one_batch_when_dropping_the_remainder(crop_tree, jpegs, tmp_path):
    out = tmp_path / "rec"
    write_tfrecords(crop_tree, out, num_shards=2)
    with pytest.raises(ValueError, match=rf"hold {len(jpegs)} examples .*fewer than one batch of 64"):
        tfrecord_dataset(str(out / "train-*.tfrecord"), 64, training=True)
    assert _drain(tfrecord_dataset(str(out / "train-*.tfrecord"), 64, training=False)) == len(jpegs)


def test_image_of_the_wrong_size_names_record_and_shape(jpegs, real_crops, tmp_path):
    small = _jpeg(cv2.resize(real_crops[0][1], (48, 56)))
    path = _write(tmp_path / "sizes.tfrecord", [(jpegs[0], 0, (112, 96)), (small, 1, (56, 48))])
    message = _error(path)
    assert "sizes.tfrecord" in message and "shape mismatch" in message
    assert _record(message) == 1
    assert "[56 48 3]" in message
