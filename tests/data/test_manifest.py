"""`data.manifest` on real TFRecords of LFW crops: counts, missing and corrupt files, a remote file system."""

from __future__ import annotations

import json
import os
import shutil
import uuid

import pytest
import tensorflow as tf

from keras_sphereface.data import dataset, manifest, records
from keras_sphereface.data.manifest import (
    LABELS_NAME,
    MANIFEST_NAME,
    ManifestError,
    count_examples,
    match_shards,
    read_manifest,
    read_num_classes,
    shard_entries,
)
from keras_sphereface.data.records import write_tfrecords

pytestmark = pytest.mark.tf_backend


@pytest.fixture(scope="module")
def written(aligned_subset, tmp_path_factory):
    """`(folder, manifest)`: the crops as 3 training and 1 validation shard (2 of 6 identities held out)."""
    out = tmp_path_factory.mktemp("manifest_records")
    return out, write_tfrecords(aligned_subset, out, num_shards=3, val_shards=1, val_fraction=0.34, seed=0)


def _records_in(path: str) -> int:
    return sum(1 for _ in tf.data.TFRecordDataset(path))


def _copy_shards(source, target):
    target.mkdir()
    for shard in source.glob("*.tfrecord"):
        shutil.copy(shard, target / shard.name)
    return target


def test_counts_are_those_of_the_shards(written):
    out, written_manifest = written
    files = match_shards(str(out / "*.tfrecord"))
    assert [os.path.basename(f).split("-")[0] for f in files] == ["train", "train", "train", "val"]
    assert read_manifest(str(out)) == json.loads(json.dumps(written_manifest))
    entries = shard_entries(files)
    assert list(entries) == files
    for path, entry in entries.items():
        assert entry["file"] == os.path.basename(path)
        assert entry["num_examples"] == _records_in(path)
        assert entry["bytes"] == tf.io.gfile.stat(path).length
    total = sum(_records_in(f) for f in files)
    assert count_examples(files) == total == sum(s["num_examples"] for s in written_manifest["splits"].values())
    train = match_shards(str(out / "train-*.tfrecord"))
    assert count_examples(train) == written_manifest["splits"]["train"]["num_examples"] < total
    labels = json.loads((out / LABELS_NAME).read_text())
    assert read_num_classes(files) == labels["num_classes"] == written_manifest["num_classes"] == 6


def test_names_and_reader_stay_importable_from_their_old_homes():
    assert (records.MANIFEST_NAME, records.LABELS_NAME) == (MANIFEST_NAME, LABELS_NAME)
    assert (MANIFEST_NAME, LABELS_NAME) == ("manifest.json", "labels.json")
    assert dataset.read_num_classes is manifest.read_num_classes
    assert issubclass(ManifestError, ValueError)


def test_without_a_manifest_nothing_is_counted(written, tmp_path):
    out, _ = written
    bare = _copy_shards(out, tmp_path / "bare")
    files = match_shards(str(bare / "*.tfrecord"))
    assert read_manifest(str(bare)) is None
    assert shard_entries(files) == dict.fromkeys(files)
    assert count_examples(files) is None
    assert read_num_classes(files) is None
    # The pipeline still reads them, without the counts.
    assert sum(len(y) for _, y in dataset.tfrecord_dataset(files, 4, training=False)) == sum(
        _records_in(f) for f in files)


def test_a_shard_the_manifest_does_not_list_is_not_counted(written, tmp_path):
    out, _ = written
    folder = tmp_path / "extra"
    shutil.copytree(out, folder)
    shutil.copy(folder / "val-00000-of-00001.tfrecord", folder / "train-extra.tfrecord")
    files = match_shards(str(folder / "train-*.tfrecord"))
    entries = shard_entries(files)
    assert entries[str(folder / "train-extra.tfrecord")] is None
    assert sum(entry is not None for entry in entries.values()) == 3
    assert count_examples(files) is None


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("{not json", r"Cannot read .*manifest\.json \(JSONDecodeError"),
        ("[1, 2]", r"manifest\.json is not the JSON object .*Received: list"),
        (json.dumps({"splits": []}), r"manifest\.json: expected `splits` to be an object"),
        (json.dumps({"splits": {"train": {"shards": [{"file": "a.tfrecord", "num_examples": "3"}]}}}),
         r"manifest\.json: expected each shard of split 'train' .*`num_examples`"),
    ],
)
def test_a_corrupt_manifest_is_refused_naming_the_file(written, tmp_path, text, expected):
    out, _ = written
    folder = tmp_path / "corrupt"
    shutil.copytree(out, folder)
    (folder / MANIFEST_NAME).write_text(text)
    files = match_shards(str(folder / "*.tfrecord"))
    for read in (lambda: read_manifest(str(folder)), lambda: shard_entries(files), lambda: count_examples(files),
                 lambda: dataset.tfrecord_dataset(files, 2, training=False)):
        with pytest.raises(ManifestError, match=expected) as caught:
            read()
        assert str(folder / MANIFEST_NAME) in str(caught.value)


def test_labels_without_a_valid_num_classes_name_the_file(written, tmp_path):
    out, _ = written
    folder = tmp_path / "labels"
    shutil.copytree(out, folder)
    (folder / LABELS_NAME).write_text(json.dumps({"num_classes": 0}))
    with pytest.raises(ManifestError, match=rf"{folder / LABELS_NAME} has no valid num_classes .*num_classes=0"):
        read_num_classes(str(folder / "*.tfrecord"))


def test_records_on_another_file_system_are_counted(written):
    """The same shards and manifest in TensorFlow's in-memory `ram://` file system, read through `tf.io.gfile`."""
    out, written_manifest = written
    remote = f"ram://ksf-{uuid.uuid4().hex}/records"
    tf.io.gfile.makedirs(remote)
    for path in out.iterdir():
        tf.io.gfile.copy(str(path), f"{remote}/{path.name}")
    files = match_shards(f"{remote}/train-*.tfrecord")
    assert all(f.startswith("ram://") for f in files) and len(files) == 3
    assert read_manifest(remote)["num_classes"] == written_manifest["num_classes"]
    assert all(entry is not None for entry in shard_entries(files).values())
    assert count_examples(files) == written_manifest["splits"]["train"]["num_examples"]
    assert read_num_classes(f"{remote}/*.tfrecord") == written_manifest["num_classes"]
    labels = [y.numpy() for _, y in dataset.tfrecord_dataset(files, 2, training=False)]
    assert sum(len(y) for y in labels) == count_examples(files)
    # The shard-size check sees the remote sizes too.
    with tf.io.gfile.GFile(files[0], "rb") as handle:
        data = handle.read()
    tf.io.gfile.remove(files[0])  # (ram:// appends to an existing file)
    with tf.io.gfile.GFile(files[0], "wb") as handle:
        handle.write(data[: len(data) // 2])
    with pytest.raises(ValueError, match=rf"TFRecord file {files[0]} has {len(data) // 2} bytes"):
        dataset.tfrecord_dataset(files, 2, training=False)
