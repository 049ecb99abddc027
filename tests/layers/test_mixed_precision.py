"""Heads compute in float32 and train to finite losses under mixed-precision policies."""

from __future__ import annotations

import keras
import numpy as np
import pytest

from keras_sphereface.layers import ArcFace, CosFace, MarginInnerProduct, SphereFaceR
from tests.layers._backend import numpy


@pytest.fixture
def policy(request):
    previous = keras.config.dtype_policy()
    keras.config.set_dtype_policy(request.param)
    yield request.param
    keras.config.set_dtype_policy(previous)


@pytest.mark.slow
@pytest.mark.parametrize("policy", ["mixed_float16", "mixed_bfloat16"], indirect=True)
@pytest.mark.parametrize("make_head", [lambda: MarginInnerProduct(8, m=4), lambda: ArcFace(8),
                                       lambda: CosFace(8), lambda: SphereFaceR(8)])
def test_small_model_trains_with_finite_loss(policy, make_head):
    rng = np.random.default_rng(0)
    images = rng.normal(size=(64, 12, 12, 3)).astype(np.float32)
    labels = rng.integers(0, 8, size=64).astype(np.int32)
    image_in, label_in = keras.Input((12, 12, 3)), keras.Input((), dtype="int32")
    x = keras.layers.Conv2D(8, 3, activation="relu")(image_in)
    x = keras.layers.Flatten()(x)
    embeddings = keras.layers.Dense(16)(x)
    assert embeddings.dtype == policy.split("_")[1]
    head = make_head()
    logits = head([embeddings, label_in])
    assert head.compute_dtype == "float32" and head.kernel.dtype == "float32"
    model = keras.Model([image_in, label_in], logits)
    optimizer = keras.optimizers.SGD(0.01)
    if policy == "mixed_float16":
        optimizer = keras.optimizers.LossScaleOptimizer(optimizer)
    model.compile(optimizer=optimizer, loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    history = model.fit([images, labels], labels, batch_size=16, epochs=2, verbose=0)
    assert np.all(np.isfinite(history.history["loss"]))
    out = model([images[:4], labels[:4]], training=True)
    assert keras.backend.standardize_dtype(out.dtype) == "float32"
    assert np.all(np.isfinite(numpy(out)))


def test_explicit_mixed_dtype_argument_still_computes_in_float32():
    head = CosFace(4, dtype="mixed_float16")
    x = np.random.default_rng(1).normal(size=(3, 5)).astype(np.float16)
    out = head([x, np.array([0, 1, 2])], training=True)
    assert keras.backend.standardize_dtype(out.dtype) == "float32"
