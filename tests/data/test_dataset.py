"""The tf.data pipeline on TFRecords of real LFW crops: shapes, values, determinism, errors."""

from __future__ import annotations

import re

import cv2
import numpy as np
import pytest
import tensorflow as tf

from keras_sphereface.data import align
from keras_sphereface.data.dataset import tfrecord_dataset
from keras_sphereface.data.images import decode_image_rgb
from keras_sphereface.data.records import make_example, write_tfrecords

pytestmark = pytest.mark.tf_backend


@pytest.fixture(scope="module")
def crop_records(aligned_subset, tmp_path_factory):
    """TFRecords (3 shards) of the 112x96 crops, and the crops by path for reference."""
    out = tmp_path_factory.mktemp("crop_records")
    write_tfrecords(aligned_subset, out, num_shards=3, seed=0)
    crops = {p.relative_to(aligned_subset).as_posix(): decode_image_rgb(p.read_bytes())
             for p in aligned_subset.rglob("*.jpg")}
    return str(out / "train-*.tfrecord"), crops


@pytest.fixture(scope="module")
def photo_records(lfw_subset, tmp_path_factory):
    """One shard of the original photos with their landmarks, in file order."""
    photos, landmark_file, _ = lfw_subset
    out = tmp_path_factory.mktemp("photo_records")
    write_tfrecords(photos, out, num_shards=1, landmarks=landmark_file)
    return str(out / "train-00000-of-00001.tfrecord")


def _stored_paths(pattern):
    spec = {"path": tf.io.FixedLenFeature([], tf.string)}
    files = sorted(tf.io.gfile.glob(pattern))
    return [tf.io.parse_single_example(r, spec)["path"].numpy().decode() for r in tf.data.TFRecordDataset(files)]


def _all(dataset):
    images, labels = zip(*[(x.numpy(), y.numpy()) for x, y in dataset], strict=True)
    return np.concatenate(images), np.concatenate(labels)


def test_shapes_dtypes_and_range(crop_records):
    pattern, crops = crop_records
    batch = 4
    batches = list(tfrecord_dataset(pattern, batch, seed=0))
    assert len(batches) == len(crops) // batch  # drop_remainder when training
    for images, labels in batches:
        assert images.shape == (batch, 112, 96, 3) and images.dtype == tf.float32
        assert labels.shape == (batch,) and labels.dtype == tf.int32
        assert float(tf.reduce_min(images)) > -1.0 and float(tf.reduce_max(images)) < 1.0
    eval_images, _ = _all(tfrecord_dataset(pattern, batch, training=False))
    assert len(eval_images) == len(crops)  # the last partial batch is kept


def test_values_are_the_normalized_crops(crop_records):
    pattern, crops = crop_records
    single = pattern.replace("*", "00000-of-00003")
    images, labels = _all(tfrecord_dataset(single, 5, training=False))
    paths = _stored_paths(single)
    identities = sorted({p.split("/")[0] for p in crops})
    for image, label, path in zip(images, labels, paths, strict=True):
        expected = (crops[path].astype(np.float32) - 127.5) / 128.0  # decoded independently by OpenCV
        np.testing.assert_allclose(image, expected, atol=1e-6)  # TF decodes exactly as OpenCV
        assert identities[label] == path.split("/")[0]
    raw, _ = _all(tfrecord_dataset(single, 5, training=False, normalization=None))
    np.testing.assert_allclose(raw, images * 128.0 + 127.5, atol=1e-4)
    assert raw.min() >= 0 and raw.max() <= 255 and raw.max() > 200


def test_deterministic_with_a_seed(crop_records):
    pattern, _ = crop_records
    first = _all(tfrecord_dataset(pattern, 4, seed=11))
    second = _all(tfrecord_dataset(pattern, 4, seed=11))
    other = _all(tfrecord_dataset(pattern, 4, seed=12))
    np.testing.assert_array_equal(first[0], second[0])
    np.testing.assert_array_equal(first[1], second[1])
    assert not np.array_equal(first[0], other[0])


def test_training_flips_some_images_and_only_flips(crop_records):
    pattern, _ = crop_records
    originals, _ = _all(tfrecord_dataset(pattern, 1, training=False, normalization=None))
    trained, _ = _all(tfrecord_dataset(pattern, 1, seed=5, normalization=None))
    flipped = 0
    for image in trained:
        same = [np.array_equal(image, o) for o in originals]
        mirror = [np.array_equal(image, o[:, ::-1]) for o in originals]
        assert any(same) or any(mirror)
        flipped += any(mirror) and not any(same)
    assert 0 < flipped < len(trained)
    unflipped, _ = _all(tfrecord_dataset(pattern, 1, seed=5, flip=False, normalization=None))
    assert all(any(np.array_equal(image, o) for o in originals) for image in unflipped)


def test_optional_augmentations_change_pixels(crop_records):
    pattern, _ = crop_records
    plain, _ = _all(tfrecord_dataset(pattern, 2, seed=3, flip=False))
    jittered, _ = _all(tfrecord_dataset(pattern, 2, seed=3, flip=False, brightness=20.0, contrast=0.2))
    assert plain.shape == jittered.shape and not np.allclose(plain, jittered)
    assert jittered.min() >= -1.0 and jittered.max() <= 1.0


def test_cache_gives_the_same_output(crop_records, tmp_path):
    pattern, _ = crop_records
    plain = _all(tfrecord_dataset(pattern, 3, training=False))
    cached_ds = tfrecord_dataset(pattern, 3, training=False, cache=str(tmp_path / "cache"))
    for _ in range(2):
        cached = _all(cached_ds)
        np.testing.assert_array_equal(plain[0], cached[0])


def test_on_the_fly_alignment_matches_opencv(photo_records, lfw_subset):
    photos, landmark_file, _ = lfw_subset
    points = align.read_landmarks(landmark_file)
    images, _ = _all(tfrecord_dataset(photo_records, 4, training=False, align=True, normalization=None))
    for image, path in zip(images, _stored_paths(photo_records), strict=True):
        expected = align.align_face(align.load_image_rgb(photos / path), points[path]).astype(np.float32)
        difference = np.abs(image - expected)
        # Float32 vs float64 transforms and TF's vs OpenCV's bilinear weights: a few grey levels at most.
        assert difference.mean() < 0.5 and np.percentile(difference, 99) <= 3, path
    arcface, _ = _all(tfrecord_dataset(photo_records, 4, training=False, align=True, template="arcface",
                                       image_size=(112, 112)))
    assert arcface.shape[1:] == (112, 112, 3)


def test_align_takes_the_alignment_vocabulary_and_the_old_booleans(crop_records, photo_records):
    pattern, _ = crop_records
    crops, _ = _all(tfrecord_dataset(pattern, 4, training=False, align="aligned"))
    np.testing.assert_array_equal(crops, _all(tfrecord_dataset(pattern, 4, training=False, align=False))[0])
    warped, _ = _all(tfrecord_dataset(photo_records, 4, training=False, align="landmarks"))
    np.testing.assert_array_equal(warped, _all(tfrecord_dataset(photo_records, 4, training=False, align=True))[0])
    for bad in ("detect", "yes", None, 1):
        with pytest.raises(ValueError, match=rf"align must be one of \['aligned', 'landmarks'\].*"
                                             rf"Received: align={re.escape(repr(bad))}"):
            tfrecord_dataset(pattern, 4, align=bad)


def test_input_context_shards_files_and_splits_the_batch(crop_records):
    pattern, crops = crop_records
    seen = []
    for pipeline in range(3):
        context = tf.distribute.InputContext(num_input_pipelines=3, input_pipeline_id=pipeline,
                                             num_replicas_in_sync=3)
        batches = [x.numpy() for x, _ in tfrecord_dataset(pattern, 6, training=False, input_context=context)]
        assert all(len(x) <= 2 for x in batches)  # the global batch of 6 split over 3 replicas
        seen.append(np.concatenate(batches))
    assert sum(len(s) for s in seen) == len(crops)
    sums = sorted(float(x.sum()) for s in seen for x in s)
    everything, _ = _all(tfrecord_dataset(pattern, 6, training=False))
    np.testing.assert_allclose(sums, sorted(float(x.sum()) for x in everything), rtol=1e-6)
    with pytest.raises(ValueError, match="cannot be split over 4 input pipelines"):
        tfrecord_dataset(pattern, 8, input_context=tf.distribute.InputContext(4, 0, 4))


def test_distribute_datasets_from_function(crop_records):
    pattern, _ = crop_records
    strategy = tf.distribute.MirroredStrategy(["/cpu:0"])
    distributed = strategy.distribute_datasets_from_function(
        lambda context: tfrecord_dataset(pattern, 4, seed=0, input_context=context)
    )
    images, labels = next(iter(distributed))
    assert images.shape == (4, 112, 96, 3) and labels.dtype == tf.int32


def _corrupt_copy(source, target, position):
    with open(source, "rb") as handle:
        data = bytearray(handle.read())
    data[position] ^= 0xFF
    with open(target, "wb") as handle:
        handle.write(bytes(data))


def test_corrupt_or_truncated_shard_names_file_and_record(crop_records, tmp_path):
    pattern, _ = crop_records
    source = sorted(tf.io.gfile.glob(pattern))[0]
    with open(source, "rb") as handle:
        size = len(handle.read())
    _corrupt_copy(source, tmp_path / "flipped.tfrecord", size // 2)
    with open(source, "rb") as handle, open(tmp_path / "short.tfrecord", "wb") as out:
        out.write(handle.read()[: size - 100])
    for name in ("flipped.tfrecord", "short.tfrecord"):
        with pytest.raises(tf.errors.InvalidArgumentError, match=rf"bad TFRecord file.*{name}.*record") as info:
            for _ in tfrecord_dataset(str(tmp_path / name), 2, training=False):
                pass
        assert "corrupt or undecodable record" in str(info.value)


def test_undecodable_image_and_shape_mismatch_name_the_record(crop_records, lfw_subset, tmp_path):
    _, crops = crop_records
    photos, _, names = lfw_subset
    crop = next(iter(crops.values()))
    jpeg = cv2.imencode(".jpg", crop[..., ::-1])[1].tobytes()
    broken = jpeg[:2] + b"\x00" * 64 + jpeg[-2:]
    path = tmp_path / "bad.tfrecord"
    with tf.io.TFRecordWriter(str(path)) as writer:
        for index, data in enumerate([jpeg, jpeg, broken, jpeg]):
            writer.write(make_example(data, index, "x", f"x/{index}.jpg", 112, 96))
    with pytest.raises(tf.errors.InvalidArgumentError, match=r"bad.tfrecord.*record \(0-based\).*\b2\b"):
        for _ in tfrecord_dataset(str(path), 1, training=False):
            pass
    big = (photos / names[0]).read_bytes()  # an original 150x150 photo, not a 112x96 crop
    with tf.io.TFRecordWriter(str(tmp_path / "big.tfrecord")) as writer:
        writer.write(make_example(jpeg, 0, "x", "x/0.jpg", 112, 96))
        writer.write(make_example(big, 1, "y", "y/1.jpg", 150, 150))
    with pytest.raises(tf.errors.InvalidArgumentError, match=r"big.tfrecord.*\b1\b.*shape mismatch"):
        for _ in tfrecord_dataset(str(tmp_path / "big.tfrecord"), 1, training=False):
            pass
    with pytest.raises(tf.errors.InvalidArgumentError, match=r"no landmarks stored"):
        for _ in tfrecord_dataset(str(tmp_path / "big.tfrecord"), 1, training=False, align=True):
            pass


def test_bad_arguments(crop_records, tmp_path):
    pattern, _ = crop_records
    with pytest.raises(ValueError, match="No TFRecord file matches"):
        tfrecord_dataset(str(tmp_path / "none-*.tfrecord"), 4)
    with pytest.raises(ValueError, match="batch_size must be a positive integer"):
        tfrecord_dataset(pattern, 0)
    with pytest.raises(ValueError, match="Unknown alignment template"):
        tfrecord_dataset(pattern, 4, align=True, template="dlib")


@pytest.mark.parametrize("cache", [False, True])
def test_flips_change_between_epochs(crop_records, cache):
    pattern, _ = crop_records
    originals, _ = _all(tfrecord_dataset(pattern, 1, training=False, normalization=None))
    dataset = tfrecord_dataset(pattern, 1, seed=2, normalization=None, cache=cache)
    patterns = []
    for _ in range(2):
        flipped = set()
        for image in _all(dataset)[0]:
            match = [i for i, o in enumerate(originals) if np.array_equal(image, o)]
            mirror = [i for i, o in enumerate(originals) if np.array_equal(image, o[:, ::-1])]
            assert match or mirror
            if mirror and not match:
                flipped.add(mirror[0])
        patterns.append(flipped)
    assert patterns[0] and patterns[1] and patterns[0] != patterns[1]
