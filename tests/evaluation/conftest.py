"""Fixtures for the evaluation tests: a tiny Keras embedding model and a 20-pair LFW list."""

from __future__ import annotations

import numpy as np
import pytest

# 20 real LFW View 2 pairs (the first 5 same and 5 different pairs of folds 1 and 2 of pairs.txt),
# written with an LFW header of 2 folds x 5 pairs per class.
SUBSET_FOLDS, SUBSET_PER_CLASS = 2, 5


def tiny_model(input_shape=(112, 96, 3), seed: int = 0, dim: int = 16):
    """A small random CNN: a few thousand weights, milliseconds per batch."""
    import keras

    keras.utils.set_random_seed(seed)
    inputs = keras.Input(shape=input_shape, name="image")
    x = keras.layers.Conv2D(8, 5, strides=4, activation="relu", name="conv")(inputs)
    x = keras.layers.Conv2D(16, 3, strides=2, activation="relu", name="conv2")(x)
    x = keras.layers.GlobalAveragePooling2D(name="pool")(x)
    outputs = keras.layers.Dense(dim, name="embedding")(x)
    return keras.Model(inputs, outputs, name="tiny")


@pytest.fixture
def tiny():
    return tiny_model()


def lfw_subset(lfw_dir, folds: int, per_class: int) -> str:
    """An LFW-format pair list of the first `per_class` same and different pairs of `folds` folds."""
    lines = (lfw_dir / "pairs.txt").read_text().splitlines()[1:]
    chosen = []
    for fold in range(folds):
        block = lines[fold * 600:(fold + 1) * 600]
        chosen += block[:per_class] + block[300:300 + per_class]
    return f"{folds}\t{per_class}\n" + "\n".join(chosen) + "\n"


@pytest.fixture(scope="session")
def lfw_subset_text(lfw_dir) -> str:
    """The text of a 20-pair LFW-format list taken from the real pairs.txt."""
    return lfw_subset(lfw_dir, SUBSET_FOLDS, SUBSET_PER_CLASS)


@pytest.fixture
def lfw_subset_file(tmp_path, lfw_subset_text):
    path = tmp_path / "pairs20.txt"
    path.write_text(lfw_subset_text)
    return path


def rng_images(count: int, size=(112, 96), seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, size=(count, *size, 3), dtype=np.uint8)
