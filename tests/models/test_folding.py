"""`fold_batch_norms`: the same inference values with each foldable BatchNormalization folded away."""

from __future__ import annotations

import keras
import numpy as np
import pytest

from keras_sphereface.models import IResNet, MobileFaceNet, Sphere4, fold_batch_norms
from keras_sphereface.models.folding import foldable_pairs
from tests.layers._backend import numpy


def _randomize_statistics(model, seed=0):
    """Moving statistics, scales and offsets away from the initial 0/1, so a wrong fold shows."""
    rng = np.random.default_rng(seed)
    for layer in model.layers:
        if isinstance(layer, keras.layers.BatchNormalization):
            for variable, low, high in ((layer.moving_mean, -0.3, 0.3), (layer.beta, -0.3, 0.3),
                                        (layer.moving_variance, 0.5, 1.5), (layer.gamma, 0.7, 1.3)):
                if variable is not None:
                    variable.assign(rng.uniform(low, high, variable.shape).astype("float32"))


def _norms(model) -> int:
    return sum(isinstance(layer, keras.layers.BatchNormalization) for layer in model.layers)


def _assert_same_outputs(model, folded, shape, rtol=2e-5):
    images = np.random.default_rng(1).uniform(-1, 1, (2, *shape)).astype("float32")
    expected = numpy(model(images, training=False))
    got = numpy(folded(images, training=False))
    np.testing.assert_allclose(got, expected, rtol=rtol, atol=rtol * np.abs(expected).max())


def test_mobilefacenet_folds_every_norm_and_keeps_its_values():
    model = MobileFaceNet(input_shape=(112, 112, 3))
    _randomize_statistics(model)
    before = [numpy(w) for w in model.weights]
    folded = fold_batch_norms(model)
    assert _norms(model) == 50 and _norms(folded) == 0
    assert folded.name == model.name and len(folded.layers) == len(model.layers) - 50
    _assert_same_outputs(model, folded, (112, 112, 3))
    for weight, value in zip(model.weights, before, strict=True):  # the source model is untouched
        np.testing.assert_array_equal(numpy(weight), value)


def test_iresnet_keeps_the_norms_before_convolutions():
    model = IResNet([1, 1, 1, 1], input_shape=(112, 112, 3), embedding_dim=32)
    _randomize_statistics(model)
    folded = fold_batch_norms(model)
    pairs = foldable_pairs(model)
    # Each block's first BN reads the block input (before a convolution) and stays; so does the
    # head's first BN, which reads the last block's sum.
    assert 0 < len(pairs) < _norms(model)
    assert _norms(folded) == _norms(model) - len(pairs)
    assert all(not isinstance(producer, keras.layers.BatchNormalization) for _, producer in pairs)
    _assert_same_outputs(model, folded, (112, 112, 3))


def test_a_model_without_norms_is_returned_as_it_is():
    model = Sphere4(input_shape=(32, 32, 3), embedding_dim=8)
    assert fold_batch_norms(model) is model


def _graph(inputs, outputs):
    model = keras.Model(inputs, outputs)
    _randomize_statistics(model)
    return model


def test_only_sole_readers_after_linear_channels_last_layers_are_folded():
    image = keras.Input((8, 8, 3))
    shared = keras.layers.Conv2D(4, 3, padding="same", name="shared")(image)  # also read by `skip`
    normed = keras.layers.BatchNormalization(name="bn_shared")(shared)
    skip = keras.layers.Conv2D(4, 1, name="skip")(shared)
    activated = keras.layers.Conv2D(4, 3, padding="same", activation="relu", name="relu_conv")(image)
    bn_relu = keras.layers.BatchNormalization(name="bn_relu")(activated)
    depthwise = keras.layers.DepthwiseConv2D(3, depth_multiplier=2, padding="same", use_bias=False,
                                             name="depthwise")(image)
    bn_depthwise = keras.layers.BatchNormalization(center=False, scale=False, name="bn_depthwise")(depthwise)
    summed = keras.layers.Concatenate()([normed, skip, bn_relu, bn_depthwise])
    pooled = keras.layers.GlobalAveragePooling2D()(summed)
    dense = keras.layers.Dense(5, use_bias=False, name="dense")(pooled)
    output = keras.layers.BatchNormalization(name="bn_dense")(dense)
    model = _graph(image, output)

    assert sorted(norm.name for norm, _ in foldable_pairs(model)) == ["bn_dense", "bn_depthwise"]
    folded = fold_batch_norms(model)
    assert sorted(layer.name for layer in folded.layers if isinstance(layer, keras.layers.BatchNormalization)) == [
        "bn_relu", "bn_shared"]
    assert folded.get_layer("depthwise").use_bias and folded.get_layer("dense").use_bias
    _assert_same_outputs(model, folded, (8, 8, 3))


def test_norms_over_another_axis_stay():
    image = keras.Input((8, 8, 3))
    conv = keras.layers.Conv2D(4, 3, name="conv")(image)
    model = _graph(image, keras.layers.BatchNormalization(axis=1)(conv))
    assert foldable_pairs(model) == [] and fold_batch_norms(model) is model


def test_the_folded_model_saves_and_loads(tmp_path):
    model = MobileFaceNet(input_shape=(112, 112, 3))
    _randomize_statistics(model)
    folded = fold_batch_norms(model)
    path = tmp_path / "folded.keras"
    folded.save(path)
    _assert_same_outputs(model, keras.saving.load_model(path), (112, 112, 3))


def test_subclassed_models_are_returned_as_they_are():
    class Tiny(keras.Model):
        def __init__(self):
            super().__init__()
            self.conv = keras.layers.Conv2D(2, 1)
            self.norm = keras.layers.BatchNormalization()

        def call(self, x):
            return self.norm(self.conv(x))

    model = Tiny()
    model(np.zeros((1, 4, 4, 3), "float32"))
    assert fold_batch_norms(model) is model


@pytest.mark.parametrize("policy", ["mixed_bfloat16"])
def test_mixed_precision_models_fold_to_float32_weights(policy):
    previous = keras.config.dtype_policy()
    keras.config.set_dtype_policy(policy)
    try:
        model = MobileFaceNet(input_shape=(112, 112, 3))
    finally:
        keras.config.set_dtype_policy(previous)
    _randomize_statistics(model)
    folded = fold_batch_norms(model)
    assert all(weight.dtype == "float32" for weight in folded.weights)
    _assert_same_outputs(model, folded, (112, 112, 3), rtol=5e-2)
