"""`keras_sphereface.models.PReLU`: Keras' PReLU values, with a hand-written training gradient."""

from __future__ import annotations

import keras
import numpy as np
import pytest

from keras_sphereface.models import PReLU, Sphere4
from tests.layers._backend import gradients, numpy


def _pair(shape, shared_axes):
    """Our layer and Keras', built on `shape` with the same random slopes (some negative, some > 1)."""
    ours = PReLU(shared_axes=shared_axes)
    theirs = keras.layers.PReLU(shared_axes=shared_axes)
    ours.build(shape)
    theirs.build(shape)
    slopes = np.random.default_rng(1).uniform(-0.5, 1.5, ours.alpha.shape).astype("float32")
    ours.alpha.assign(slopes)
    theirs.alpha.assign(slopes)
    return ours, theirs


@pytest.mark.parametrize("shape, shared_axes", [((4, 5, 6, 3), [1, 2]), ((4, 7), None), ((4, 5, 6, 3), [1])])
def test_values_and_gradients_equal_keras_prelu(shape, shared_axes):
    rng = np.random.default_rng(0)
    x = rng.normal(size=shape).astype("float32")
    x.reshape(-1)[::7] = 0.0  # the kink
    upstream = rng.normal(size=shape).astype("float32")
    ours, theirs = _pair((None, *shape[1:]), shared_axes)
    alpha = numpy(ours.alpha)

    def call(layer):
        options = {"training": True} if isinstance(layer, PReLU) else {}  # Keras' call takes no `training`
        def weighted(inputs, slopes):
            outputs, _ = layer.stateless_call([slopes], [], inputs, **options)
            return keras.ops.multiply(outputs, upstream)

        return weighted

    np.testing.assert_array_equal(numpy(call(ours)(x, alpha)), numpy(call(theirs)(x, alpha)))
    np.testing.assert_array_equal(numpy(ours(x)), numpy(theirs(x)))  # inference: Keras' own formula
    (grad_x, grad_alpha), (keras_x, keras_alpha) = gradients(call(ours), x, alpha), gradients(call(theirs), x, alpha)
    assert grad_x.shape == keras_x.shape and grad_alpha.shape == keras_alpha.shape == alpha.shape
    np.testing.assert_allclose(grad_alpha, keras_alpha, rtol=1e-5, atol=1e-6)
    kink = x == 0
    np.testing.assert_allclose(grad_x[~kink], keras_x[~kink], rtol=1e-5, atol=1e-6)
    # At x = 0 Caffe's PReLU (and PyTorch's) take the slope's side; Keras' relu formula gives 0.
    slope = np.broadcast_to(alpha, shape)
    np.testing.assert_allclose(grad_x[kink], (slope * upstream)[kink], rtol=1e-6)


def test_models_use_it_and_weights_load_into_keras_prelu_models(tmp_path):
    model = Sphere4(input_shape=(32, 32, 3), embedding_dim=8)
    prelus = [layer for layer in model.layers if isinstance(layer, keras.layers.PReLU)]
    assert prelus and all(type(layer) is PReLU for layer in prelus)
    model.save_weights(tmp_path / "sphere4.weights.h5")
    restored = keras.saving.load_model(_saved(model, tmp_path))
    assert type(restored.get_layer(prelus[0].name)) is PReLU
    images = np.random.default_rng(0).uniform(-1, 1, (2, 32, 32, 3)).astype("float32")
    np.testing.assert_allclose(numpy(restored(images)), numpy(model(images)), rtol=1e-6, atol=1e-6)


def _saved(model, folder) -> str:
    path = str(folder / "model.keras")
    model.save(path)
    return path
