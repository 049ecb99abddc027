"""SphereNet builders: exact parameter counts, Caffe layer names, initialization, dtypes, arguments."""

from __future__ import annotations

import keras
import numpy as np
import pytest

from keras_sphereface import models
from keras_sphereface.models import sphere

# The counts the issue states (conv biases, per-channel PReLU and fc5 included), at 112x96.
EXPECTED_PARAMS = {
    "Sphere4": 12_562_496,
    "Sphere10": 15_219_264,
    "Sphere20": 22_670_656,
    "Sphere36": 32_778_816,
    "Sphere64": 48_200_512,
}


def _formula_params(units, height, width, embedding_dim=512):
    """Parameters by hand: 3x3 convs with bias, PReLU per channel, fc5 on the (H/16)x(W/16)x512 map."""
    total, in_channels = 0, 3
    for filters, count in zip((64, 128, 256, 512), units, strict=True):
        total += 9 * in_channels * filters + filters + filters  # stride-2 conv + bias + PReLU
        total += count * 2 * (9 * filters * filters + filters + filters)
        in_channels = filters
    return total + (height // 16) * (width // 16) * 512 * embedding_dim + embedding_dim


@pytest.mark.parametrize("name", list(EXPECTED_PARAMS))
def test_parameter_count_is_exact(name):
    model = getattr(models, name)()
    assert model.count_params() == EXPECTED_PARAMS[name]
    assert model.count_params() == _formula_params(sphere.SPHERE_UNITS[name.lower()], 112, 96)
    keras.backend.clear_session()


def test_sphere20_at_112x112():
    model = models.Sphere20(input_shape=(112, 112, 3))
    assert model.output.shape == (None, 512)
    assert model.count_params() == _formula_params((1, 2, 4, 1), 112, 112)


def test_layer_names_are_the_caffe_names():
    names = [layer.name for layer in models.Sphere20().layers if layer.weights]
    expected = []
    for stage, count in enumerate((1, 2, 4, 1), start=1):
        expected += [f"conv{stage}_1", f"relu{stage}_1"]
        for index in range(2, 2 + 2 * count):
            expected += [f"conv{stage}_{index}", f"relu{stage}_{index}"]
    assert names == [*expected, "fc5"]
    adds = [layer.name for layer in models.Sphere20().layers if isinstance(layer, keras.layers.Add)]
    assert adds[:3] == ["res1_3", "res2_3", "res2_5"]


def test_caffe_initialization_and_frozen_residual_biases():
    model = models.SphereNet((0, 1, 0, 0), input_shape=(32, 32, 3), embedding_dim=8)
    residual = model.get_layer("conv2_2")
    assert not residual.bias.trainable and residual.kernel.trainable
    assert residual.bias.path not in {w.path for w in model.trainable_weights}
    std = float(np.std(np.asarray(residual.kernel)))
    assert 0.008 < std < 0.012  # Gaussian std 0.01 (128*128*9 samples)
    first = np.asarray(model.get_layer("conv1_1").kernel)
    bound = np.sqrt(3.0 / (3 * 3 * 3))  # Caffe xavier: U(-sqrt(3/fan_in), sqrt(3/fan_in))
    assert np.abs(first).max() <= bound and np.abs(first).max() > 0.9 * bound
    assert np.allclose(np.asarray(model.get_layer("relu1_1").alpha), 0.25)
    assert model.get_layer("conv1_1").bias.trainable


def test_stride_two_convolutions_pad_like_caffe():
    """A one-hot input pixel at (0, 0) must reach output (0, 0) through the centre-right tap of Caffe's grid."""
    model = models.SphereNet((0, 0, 0, 0), input_shape=(16, 16, 3), embedding_dim=4)
    layer = model.get_layer("conv1_1")
    kernel = np.zeros(layer.kernel.shape, np.float32)
    kernel[1, 1, 0, 0] = 1.0  # centre tap: output (i, j) reads input (2i, 2j) with pad 1 on every side
    layer.set_weights([kernel, np.zeros(64, np.float32)])
    probe = keras.Model(model.input, layer.output)
    image = np.zeros((1, 16, 16, 3), np.float32)
    image[0, 2, 4, 0] = 1.0
    out = keras.ops.convert_to_numpy(probe(image))[0, :, :, 0]
    assert out[1, 2] == 1.0 and out.sum() == 1.0


def test_output_float32_under_mixed_precision():
    keras.mixed_precision.set_dtype_policy("mixed_float16")
    try:
        model = models.SphereNet((0, 1, 0, 0), input_shape=(32, 32, 3), embedding_dim=8)
        out = model(np.random.default_rng(0).uniform(-1, 1, (2, 32, 32, 3)).astype("float32"))
        assert model.get_layer("conv1_1").compute_dtype == "float16"
    finally:
        keras.mixed_precision.set_dtype_policy("float32")
    assert keras.backend.standardize_dtype(out.dtype) == "float32" and out.shape == (2, 8)


def test_preprocess_input():
    pixels = np.array([[0, 127.5, 255]], dtype=np.float32)
    assert np.allclose(sphere.preprocess_input(pixels), (pixels - 127.5) / 128)
    tensor = sphere.preprocess_input(keras.ops.convert_to_tensor(np.uint8([0, 255])))
    assert np.allclose(keras.ops.convert_to_numpy(tensor), [-127.5 / 128, 127.5 / 128])


@pytest.mark.parametrize(
    ("kwargs", "pattern"),
    [
        ({"units_per_stage": (1, 2, 3)}, "units_per_stage"),
        ({"units_per_stage": (1, 2, -1, 1)}, "units_per_stage"),
        ({"units_per_stage": (0, 0, 0, 0), "input_shape": (112, 100, 3)}, "input_shape"),
        ({"units_per_stage": (0, 0, 0, 0), "input_shape": (112, 96, 1)}, "input_shape"),
        ({"units_per_stage": (0, 0, 0, 0), "embedding_dim": 0}, "embedding_dim"),
        ({"units_per_stage": (0, 0, 0, 0), "weights": "casia"}, "Received: weights='casia'"),
        ({"units_per_stage": (0, 0, 0, 0), "weights": "no/such/file.weights.h5"}, "does not exist"),
    ],
)
def test_bad_arguments(kwargs, pattern):
    with pytest.raises(ValueError, match=pattern):
        models.SphereNet(**kwargs)


def test_unknown_tag_lists_the_available_ones():
    with pytest.raises(ValueError, match=r"'casia'.*Received: weights='vggface2'"):
        models.Sphere20(weights="vggface2")
