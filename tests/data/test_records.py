"""TFRecord writing on a small real LFW subset: round trip, determinism, filters, bad inputs."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
import tensorflow as tf
from click.testing import CliRunner

from keras_sphereface.data.align import read_landmarks
from keras_sphereface.data.images import decode_image_rgb
from keras_sphereface.data.records import write_tfrecords
from keras_sphereface.utils.atomic import sha256_file
from ksf.main import cli

SPEC = {
    "image": tf.io.FixedLenFeature([], tf.string),
    "format": tf.io.FixedLenFeature([], tf.string),
    "height": tf.io.FixedLenFeature([], tf.int64),
    "width": tf.io.FixedLenFeature([], tf.int64),
    "label": tf.io.FixedLenFeature([], tf.int64),
    "identity": tf.io.FixedLenFeature([], tf.string),
    "path": tf.io.FixedLenFeature([], tf.string),
    "landmarks": tf.io.VarLenFeature(tf.float32),
}


def _read_all(files) -> list[dict]:
    examples = []
    for record in tf.data.TFRecordDataset([str(f) for f in files]):
        parsed = tf.io.parse_single_example(record, SPEC)
        examples.append({
            "image": parsed["image"].numpy(),
            "format": parsed["format"].numpy().decode(),
            "size": (int(parsed["height"]), int(parsed["width"])),
            "label": int(parsed["label"]),
            "identity": parsed["identity"].numpy().decode(),
            "path": parsed["path"].numpy().decode(),
            "landmarks": tf.sparse.to_dense(parsed["landmarks"]).numpy(),
        })
    return examples


def test_round_trip_keeps_bytes_labels_and_landmarks(lfw_subset, tmp_path):
    photos, landmark_file, names = lfw_subset
    manifest = write_tfrecords(photos, tmp_path / "rec", num_shards=3, landmarks=landmark_file)
    shards = sorted((tmp_path / "rec").glob("train-*.tfrecord"))
    assert [s.name for s in shards] == [f"train-{i:05d}-of-00003.tfrecord" for i in range(3)]
    train = manifest["splits"]["train"]
    assert train["num_examples"] == len(names) == sum(s["num_examples"] for s in train["shards"])
    for entry in train["shards"]:
        path = tmp_path / "rec" / entry["file"]
        assert entry["sha256"] == sha256_file(path) and entry["bytes"] == path.stat().st_size
        assert entry["num_examples"] == sum(1 for _ in tf.data.TFRecordDataset(str(path)))

    examples = _read_all(shards)
    assert sorted(e["path"] for e in examples) == names
    labels = json.loads((tmp_path / "rec" / "labels.json").read_text())
    identities = sorted({n.split("/")[0] for n in names})
    assert [c["identity"] for c in labels["classes"]] == identities  # sorted names -> 0..N-1
    assert [c["count"] for c in labels["classes"]] == [sum(n.startswith(i + "/") for n in names)
                                                       for i in identities]
    points = read_landmarks(landmark_file)
    for example in examples:
        assert example["image"] == (photos / example["path"]).read_bytes()  # stored as is
        assert labels["classes"][example["label"]]["identity"] == example["identity"]
        assert example["identity"] == example["path"].split("/")[0]
        assert example["format"] == "jpeg"
        assert example["size"] == decode_image_rgb(example["image"]).shape[:2]
        np.testing.assert_array_equal(example["landmarks"], points[example["path"]].ravel())


def test_output_is_deterministic_given_the_seed(lfw_subset, tmp_path):
    photos, _, _ = lfw_subset
    first = write_tfrecords(photos, tmp_path / "a", num_shards=2, seed=7)
    again = write_tfrecords(photos, tmp_path / "b", num_shards=2, seed=7)
    other = write_tfrecords(photos, tmp_path / "c", num_shards=2, seed=8)

    def digests(manifest):
        return [s["sha256"] for s in manifest["splits"]["train"]["shards"]]

    assert digests(first) == digests(again)
    assert digests(first) != digests(other)


def test_rerun_with_fewer_shards_removes_the_old_ones(lfw_subset, tmp_path):
    photos, _, names = lfw_subset
    write_tfrecords(photos, tmp_path / "rec", num_shards=4)
    write_tfrecords(photos, tmp_path / "rec", num_shards=2)
    shards = sorted((tmp_path / "rec").glob("*.tfrecord"))
    assert [s.name for s in shards] == ["train-00000-of-00002.tfrecord", "train-00001-of-00002.tfrecord"]
    assert len(_read_all(shards)) == len(names)
    assert not list((tmp_path / "rec").glob(".*tmp*"))  # no temporary left behind


def test_filters_and_validation_split(lfw_subset, lfw_dir, tmp_path):
    photos, _, names = lfw_subset
    identities = sorted({n.split("/")[0] for n in names})
    (tmp_path / "exclude.txt").write_text(f"{identities[0]}\n")
    # LFW people-file format: a count line, then `name<TAB>count` lines.
    (tmp_path / "people.txt").write_text("4\n" + "".join(f"{i}\t1\n" for i in identities[:5]))
    counts = {i: sum(n.startswith(i + "/") for n in names) for i in identities}
    min_images = 3
    manifest = write_tfrecords(photos, tmp_path / "rec", num_shards=2, exclude=tmp_path / "exclude.txt",
                               people=tmp_path / "people.txt", min_images=min_images, val_fraction=0.5,
                               val_shards=1, seed=3)
    kept = [i for i in identities[1:5] if counts[i] >= min_images]
    report = json.loads((tmp_path / "rec" / "report.json").read_text())
    assert report["removed_identities"]["excluded"] == [identities[0]]
    assert report["removed_identities"]["not_included"] == [identities[5]]
    assert report["removed_identities"]["too_few_images"] == [i for i in identities[1:5] if counts[i] < 3]
    train = _read_all((tmp_path / "rec").glob("train-*.tfrecord"))
    val = _read_all((tmp_path / "rec").glob("val-*.tfrecord"))
    train_ids, val_ids = {e["identity"] for e in train}, {e["identity"] for e in val}
    assert train_ids | val_ids == set(kept) and not train_ids & val_ids and val_ids
    assert {e["label"] for e in train} == set(range(len(train_ids)))
    assert {e["label"] for e in val} == set(range(len(train_ids), len(kept)))
    assert manifest["splits"]["val"]["label_range"] == [len(train_ids), len(kept)]


def test_list_file_source_with_integer_labels(lfw_subset, tmp_path):
    photos, _, names = lfw_subset
    identities = sorted({n.split("/")[0] for n in names})
    # Labels 10, 9, 8, ... : numeric order must give 10 the highest class index.
    lines = [f"photos/{n} {10 - identities.index(n.split('/')[0])}" for n in names]
    shutil.copytree(photos, tmp_path / "photos")
    (tmp_path / "list.txt").write_text("\n".join(lines) + "\n")
    write_tfrecords(tmp_path / "list.txt", tmp_path / "rec", num_shards=1)
    examples = _read_all((tmp_path / "rec").glob("*.tfrecord"))
    assert len(examples) == len(names)
    for example in examples:
        assert example["identity"] == str(10 - identities.index(example["path"].split("/")[1]))
        assert example["label"] == len(identities) - 1 - identities.index(example["path"].split("/")[1])


def test_corrupt_and_missing_images_are_skipped_and_reported(lfw_subset, tmp_path):
    photos, _, names = lfw_subset
    tree = tmp_path / "photos"
    shutil.copytree(photos, tree)
    (tree / names[0]).write_bytes((tree / names[0]).read_bytes()[:700])  # truncated JPEG
    (tree / names[1]).write_bytes(b"GIF89a not supported")
    lines = [f"photos/{n} {n.split('/')[0]}" for n in names] + ["photos/nobody/missing.jpg someone"]
    (tmp_path / "list.txt").write_text("\n".join(lines) + "\n")
    manifest = write_tfrecords(tmp_path / "list.txt", tmp_path / "rec", num_shards=2)
    assert manifest["splits"]["train"]["num_examples"] == len(names) - 2
    report = json.loads((tmp_path / "rec" / "report.json").read_text())
    skipped = {s["path"]: s["error"] for s in report["skipped"]}
    assert set(skipped) == {f"photos/{names[0]}", f"photos/{names[1]}", "photos/nobody/missing.jpg"}
    assert "truncated or corrupt JPEG" in skipped[f"photos/{names[0]}"]
    assert "Image file not found" in skipped["photos/nobody/missing.jpg"]
    written = {e["path"] for e in _read_all((tmp_path / "rec").glob("*.tfrecord"))}
    assert f"photos/{names[0]}" not in written and len(written) == len(names) - 2


def test_resize_reencodes_and_scales_landmarks(lfw_subset, tmp_path):
    photos, landmark_file, _ = lfw_subset
    write_tfrecords(photos, tmp_path / "rec", num_shards=1, landmarks=landmark_file, resize=(75, 75))
    points = read_landmarks(landmark_file)
    for example in _read_all((tmp_path / "rec").glob("*.tfrecord")):
        assert example["size"] == (75, 75) == decode_image_rgb(example["image"]).shape[:2]
        original = decode_image_rgb((photos / example["path"]).read_bytes()).shape[0]
        expected = (points[example["path"]].astype(np.float64) + 0.5) * 75 / original - 0.5
        np.testing.assert_allclose(example["landmarks"], expected.ravel(), atol=1e-4)


def test_bad_sources_give_clear_errors(lfw_subset, tmp_path):
    photos, _, _ = lfw_subset
    tree = tmp_path / "photos"
    shutil.copytree(photos, tree)
    (tree / "Empty_Person").mkdir()
    with pytest.raises(ValueError, match=r"Identity folder .*Empty_Person holds no JPEG or PNG image"):
        write_tfrecords(tree, tmp_path / "rec")
    (tmp_path / "list.txt").write_text("a.jpg 1\nb.jpg\n")
    with pytest.raises(ValueError, match=r"list\.txt, line 2: expected `path label`, found 1 column"):
        write_tfrecords(tmp_path / "list.txt", tmp_path / "rec")
    with pytest.raises(ValueError, match="No image left to write"):
        write_tfrecords(photos, tmp_path / "rec", min_images=100)
    with pytest.raises(FileNotFoundError, match="List file not found"):
        write_tfrecords(tmp_path / "nope.txt", tmp_path / "rec")
    with pytest.raises(ValueError, match="num_shards"):
        write_tfrecords(photos, tmp_path / "rec", num_shards=0)


def test_cli_make_tfrecords(lfw_subset, tmp_path):
    photos, landmark_file, names = lfw_subset
    result = CliRunner().invoke(cli, ["make-tfrecords", str(photos), str(tmp_path / "rec"), "--shards", "2",
                                      "--landmarks", str(landmark_file), "--seed", "1"])
    assert result.exit_code == 0, result.output
    assert f"train: {len(names)} examples" in result.output
    assert len(_read_all((tmp_path / "rec").glob("train-*.tfrecord"))) == len(names)
    result = CliRunner().invoke(cli, ["make-tfrecords", str(photos), str(tmp_path / "rec"),
                                      "--resize", "112by96"])
    assert result.exit_code == 2 and "expected HxW" in result.output
