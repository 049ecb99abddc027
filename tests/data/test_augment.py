"""Training augmentation (`keras_sphereface.data.augment`) on real LFW crops and on pixel ramps."""

from __future__ import annotations

import numpy as np
import pytest
import tensorflow as tf

from keras_sphereface.data.augment import ERASE_AREA, ERASE_FILL, Augmentation, augment_image
from keras_sphereface.data.dataset import tfrecord_dataset
from keras_sphereface.data.images import decode_image_rgb
from keras_sphereface.data.records import write_tfrecords

pytestmark = pytest.mark.tf_backend

SEEDS = range(60)


@pytest.fixture(scope="module")
def crops(aligned_subset):
    """The real 112x96 LFW crops, `uint8 (112, 96, 3)` each."""
    return [decode_image_rgb(p.read_bytes()) for p in sorted(aligned_subset.rglob("*.jpg"))]


def _augment(image: np.ndarray, seed: int, **options) -> np.ndarray:
    return augment_image(tf.constant(image), tf.constant([seed, 7]), Augmentation(**options)).numpy()


def _column_ramp(height: int = 112, width: int = 96) -> np.ndarray:
    """Pixels that give their own column: `2 * column` in every channel (0 .. 190)."""
    ramp = np.repeat((2 * np.arange(width))[None, :], height, axis=0).astype(np.uint8)
    return np.repeat(ramp[:, :, None], 3, axis=2)


def test_nothing_on_is_the_identity(crops):
    image = crops[0]
    np.testing.assert_array_equal(_augment(image, 1, flip=False), image)
    assert not Augmentation(flip=False).active and Augmentation().active


def test_random_crop_is_a_zoom_of_at_most_the_asked_cut():
    ramp = _column_ramp()
    largest_cut = 0.2
    spans, lefts = [], []
    for seed in SEEDS:
        out = _augment(ramp, seed, flip=False, random_crop=largest_cut)
        assert out.shape == ramp.shape and out.dtype == np.uint8
        out = out.astype(np.float64)
        # Every row is the same ramp, increasing: a crop and resize, neither mirrored nor rotated.
        np.testing.assert_array_equal(out, np.broadcast_to(out[:1], out.shape))
        row = out[0, :, 0]
        assert np.all(np.diff(row) >= 0)
        span = (row[-1] - row[0]) / (ramp[0, -1, 0] - ramp[0, 0, 0])  # the box's width, a fraction of the image's
        assert 1 - largest_cut - 0.02 <= span <= 1 + 1e-9, (seed, span)
        spans.append(span)
        lefts.append(row[0])
    # The draws cover the range: some crops cut nearly nothing, some nearly the most, at several places.
    assert min(spans) < 1 - 0.7 * largest_cut and max(spans) > 1 - 0.3 * largest_cut
    assert len(set(np.round(lefts))) > 10


def test_random_crop_of_a_real_face_stays_in_its_range(crops):
    image = crops[1]
    out = _augment(image, 3, flip=False, random_crop=0.1)
    assert out.shape == image.shape and out.dtype == np.uint8
    assert not np.array_equal(out, image)
    # A zoom of at most 1.11x: the centre of the face moves by a few pixels, not more.
    centre = (slice(40, 72), slice(32, 64))
    assert np.abs(out[centre].astype(float) - image[centre]).mean() < 40


def _erased_box(image: np.ndarray, out: np.ndarray):
    """The bounding box `(top, bottom, left, right)` of the changed pixels, None when none changed."""
    changed = np.any(out != image, axis=2)
    if not changed.any():
        return None
    rows, cols = np.where(changed)
    return rows.min(), rows.max() + 1, cols.min(), cols.max() + 1


@pytest.mark.parametrize("index", [0, 2, 4])
def test_random_erase_fills_one_rectangle_with_grey_and_leaves_the_rest(crops, index):
    image = crops[index]
    height, width = image.shape[:2]
    for seed in range(20):
        out = _augment(image, seed, flip=False, random_erase=1.0)
        box = _erased_box(image, out)
        assert box is not None, seed
        top, bottom, left, right = box
        assert np.all(out[top:bottom, left:right] == ERASE_FILL)
        outside = np.ones((height, width), bool)
        outside[top:bottom, left:right] = False
        np.testing.assert_array_equal(out[outside], image[outside])
        # Its area: 2% to 25% of the crop (grey pixels of the photo inside the box may hide the box's rim).
        area = (bottom - top) * (right - left) / (height * width)
        assert area <= ERASE_AREA[1] * 1.1, (seed, area)
        assert area >= ERASE_AREA[0] * 0.5, (seed, area)


def test_random_erase_happens_with_its_probability(crops):
    image = crops[3]
    erased = sum(_erased_box(image, _augment(image, seed, flip=False, random_erase=0.5)) is not None
                 for seed in range(200))
    assert 70 <= erased <= 130  # binomial(200, 0.5): more than 4 standard deviations either side


def test_colour_jitter_stays_within_its_bounds(crops):
    image = crops[2]
    means = []
    for seed in SEEDS:
        out = _augment(image, seed, flip=False, brightness=20.0)
        shift = out.astype(float) - image
        # A constant offset of at most 20 grey levels, cut only at 0 and 255.
        unclipped = (out > 0) & (out < 255)
        assert np.ptp(shift[unclipped]) <= 1.0 and np.abs(shift[unclipped]).max() <= 20.5
        means.append(shift[unclipped].mean())
    assert min(means) < -10 and max(means) > 10
    for seed in range(10):
        out = _augment(image, seed, flip=False, contrast=0.3).astype(float)
        ratio = out.std() / image.std()
        assert 0.69 <= ratio <= 1.31, (seed, ratio)


def test_the_same_seed_gives_the_same_image(crops):
    options = {"random_crop": 0.1, "brightness": 10.0, "contrast": 0.2, "random_erase": 0.5}
    first = _augment(crops[0], 5, **options)
    np.testing.assert_array_equal(first, _augment(crops[0], 5, **options))
    assert any(not np.array_equal(first, _augment(crops[0], seed, **options)) for seed in range(6, 10))


@pytest.mark.parametrize(
    ("options", "name"),
    [({"random_crop": 1.0}, "random_crop"), ({"random_crop": -0.1}, "random_crop"),
     ({"random_erase": 1.2}, "random_erase"), ({"contrast": 1.0}, "contrast"),
     ({"brightness": -1.0}, "brightness"), ({"brightness": True}, "brightness")],
)
def test_bad_options_name_the_option_and_value(options, name):
    with pytest.raises(ValueError, match=rf"`{name}`.*Received: {name}="):
        Augmentation(**options)


def test_the_pipeline_erases_with_and_without_cache(aligned_subset, tmp_path):
    write_tfrecords(aligned_subset, tmp_path / "records", num_shards=2, seed=0)
    pattern = str(tmp_path / "records" / "train-*.tfrecord")
    for cache in (False, str(tmp_path / "cache")):
        dataset = tfrecord_dataset(pattern, 2, seed=0, flip=False, random_erase=1.0, normalization=None,
                                   cache=cache)
        epochs = [np.concatenate([images.numpy() for images, _ in dataset]) for _ in range(2)]
        assert len(epochs[0]) >= len(list(aligned_subset.rglob("*.jpg"))) - 1
        # Every image holds a grey rectangle: some row has a run of at least 3 pixels of exactly 128.
        for image in epochs[0]:
            grey = np.all(image == ERASE_FILL, axis=2).astype(int)
            assert max(np.convolve(row, np.ones(3, int), mode="valid").max() for row in grey) == 3
        assert not np.array_equal(epochs[0], epochs[1])  # new draws in the next epoch
