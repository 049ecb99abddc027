"""Every head round-trips through get_config and `.keras` save/load with identical outputs."""

from __future__ import annotations

import keras
import numpy as np
import pytest

from keras_sphereface.layers import (
    ArcFace,
    CombinedMargin,
    CosFace,
    MarginInnerProduct,
    NormSoftmax,
    SphereFaceR,
)
from tests.layers._backend import numpy

HEADS = [
    lambda: MarginInnerProduct(6, m=2, iteration=40, caffe_backward=True),
    lambda: ArcFace(6, s=30.0, m=0.3, easy_margin=True),
    lambda: CosFace(6, s=20.0, m=0.25),
    lambda: CombinedMargin(6, s=16.0, m1=1.1, m2=0.2, m3=0.1),
    lambda: NormSoftmax(6, s=12.0),
    lambda: SphereFaceR(6, s=25.0, m=1.7),
]


@pytest.mark.parametrize("make", HEADS)
def test_config_round_trip(make):
    head = make()
    config = head.get_config()
    clone = head.__class__.from_config(config)
    assert clone.get_config() == config


@pytest.mark.parametrize("make", HEADS)
def test_keras_save_load_identical_outputs(make, tmp_path):
    rng = np.random.default_rng(3)
    x = rng.normal(size=(10, 4)).astype(np.float32)
    labels = rng.integers(0, 6, size=10).astype(np.int32)
    inputs = [keras.Input((4,)), keras.Input((), dtype="int32")]
    head = make()
    model = keras.Model(inputs, head([keras.layers.Dense(4, name="embed")(inputs[0]), inputs[1]]))
    path = tmp_path / "head.keras"
    model.save(path)
    loaded = keras.models.load_model(path)
    assert type(loaded.layers[-1]) is type(head)
    np.testing.assert_array_equal(numpy(loaded([x, labels])), numpy(model([x, labels])))
    np.testing.assert_array_equal(
        numpy(loaded([x, labels], training=True)), numpy(model([x, labels], training=True))
    )
