"""The augmentation options of `TrainConfig` reach the training input, and a run with all of them trains."""

from __future__ import annotations

import numpy as np
import pytest
import tensorflow as tf

from keras_sphereface.data.augment import ERASE_FILL
from keras_sphereface.models.zoo import get_model_spec
from keras_sphereface.training import train
from keras_sphereface.training.distribute import Placement
from keras_sphereface.training.inputs import make_dataset, read_records_info

pytestmark = [pytest.mark.tf_backend]


def _grey_runs(images: np.ndarray, grey: float) -> list[int]:
    """Per image, the longest horizontal run of pixels equal to `grey` in every channel."""
    longest = []
    for image in images:
        mask = np.all(np.isclose(image, grey, atol=1e-6), axis=2).astype(int)
        longest.append(max(np.convolve(row, np.ones(3, int), mode="valid").max() for row in mask))
    return longest


def test_the_config_options_reach_the_pipeline(tiny):
    config = tiny(flip=False, random_erase=1.0)
    spec = get_model_spec(config.model)
    records = read_records_info(config.tfrecords)
    placement = Placement(tf.distribute.get_strategy(), "one")
    grey = float(spec.preprocess_input(np.full((1, 1, 1, 3), ERASE_FILL, np.float32))[0, 0, 0, 0])
    erased = np.concatenate([x.numpy() for x, _ in make_dataset(config, spec, records, placement, seed=0)])
    plain = np.concatenate([x.numpy() for x, _ in make_dataset(config.replace(random_erase=0.0), spec, records,
                                                               placement, seed=0)])
    assert all(run == 3 for run in _grey_runs(erased, grey))  # a grey rectangle in every crop
    assert sum(run == 3 for run in _grey_runs(plain, grey)) < len(plain) // 4


def test_a_run_with_every_augmentation_trains(tiny):
    config = tiny(steps=6, random_crop=0.1, brightness=16.0, contrast=0.2, random_erase=0.5, checkpoint_every=100)
    result = train(config)
    assert result.step == 6 and np.isfinite(result.loss)
    text = (result.out / "config.toml").read_text()
    for line in ("random_crop = 0.1", "brightness = 16.0", "contrast = 0.2", "random_erase = 0.5"):
        assert line in text, line
