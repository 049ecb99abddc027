"""MobileFaceNet and IResNet builders: structure, sizes, names, dtypes."""

from __future__ import annotations

import keras
import numpy as np
import pytest

from keras_sphereface import models
from keras_sphereface.models import iresnet, mobilefacenet
from keras_sphereface.models.convert import torch_names


def test_mobilefacenet_shapes_and_global_depthwise_kernel():
    for shape, kernel in (((112, 96, 3), (7, 6)), ((112, 112, 3), (7, 7))):
        model = models.MobileFaceNet(input_shape=shape)
        assert model.output.shape == (None, 128)
        assert tuple(model.get_layer("linear7_conv").kernel.shape[:2]) == kernel
    adds = [layer.name for layer in model.layers if isinstance(layer, keras.layers.Add)]
    # Residuals where stride 1 and channels match: blocks 1-4, 6-11 (first of its group too), 13-14.
    assert adds == [f"block{i}_add" for i in (1, 2, 3, 4, 6, 7, 8, 9, 10, 11, 13, 14)]
    bns = [layer for layer in model.layers if isinstance(layer, keras.layers.BatchNormalization)]
    assert all(layer.epsilon == 1e-5 for layer in bns)


def test_mobilefacenet_torch_names():
    names = torch_names.mobilefacenet_layer_names(models.MobileFaceNet())
    assert names["conv1_conv"] == "conv1.conv" and names["dw_conv1_prelu"] == "dw_conv1.prelu"
    assert names["block3_dw_bn"] == "blocks.3.conv.4" and names["block14_project_conv"] == "blocks.14.conv.6"
    assert names["linear7_bn"] == "linear7.bn"


def _iresnet_params(units, embedding_dim=512, hw=(7, 7)):
    """Parameters of insightface's IResNet, counting BN moving statistics as Keras does (4 per channel)."""
    bn = 4
    total = 27 * 64 + bn * 64 + 64  # conv1, bn1, prelu
    in_c = 64
    for planes, count in zip((64, 128, 256, 512), units, strict=True):
        for unit in range(count):
            total += bn * in_c + 9 * in_c * planes + bn * planes + planes + 9 * planes * planes + bn * planes
            if unit == 0:
                total += in_c * planes + bn * planes
            in_c = planes
    total += bn * 512 + 512 * hw[0] * hw[1] * embedding_dim + embedding_dim
    return total + 3 * embedding_dim  # features: no scale (fixed at 1), beta + moving mean/var


def test_iresnet18_parameter_count_and_names():
    model = models.IResNet18()
    assert model.count_params() == _iresnet_params((2, 2, 2, 2))
    names = torch_names.iresnet_layer_names(model)
    assert names["layer2_0_downsample_conv"] == "layer2.0.downsample.0"
    assert names["layer4_1_prelu"] == "layer4.1.prelu" and names["features"] == "features"
    assert not model.get_layer("features").scale


@pytest.mark.slow
@pytest.mark.parametrize("name", ["IResNet34", "IResNet50", "IResNet100"])
def test_deeper_iresnet_counts(name):
    model = getattr(models, name)()
    assert model.count_params() == _iresnet_params(iresnet.IRESNET_UNITS[name.lower()])
    keras.backend.clear_session()


def test_iresnet_forward_float32_under_mixed_precision():
    keras.mixed_precision.set_dtype_policy("mixed_float16")
    try:
        model = iresnet.IResNet((1, 1, 1, 1), input_shape=(32, 32, 3), embedding_dim=8, dropout=0.2)
        out = model(np.zeros((2, 32, 32, 3), np.float32))
    finally:
        keras.mixed_precision.set_dtype_policy("float32")
    assert keras.backend.standardize_dtype(out.dtype) == "float32" and out.shape == (2, 8)


@pytest.mark.parametrize(("kwargs", "pattern"), [({"dropout": 1.0}, "dropout"),
                                                 ({"units_per_stage": (1, 0, 1, 1)}, "units_per_stage")])
def test_iresnet_bad_arguments(kwargs, pattern):
    with pytest.raises(ValueError, match=pattern):
        iresnet.IResNet(**{"units_per_stage": (1, 1, 1, 1), **kwargs})


def test_preprocess_input_is_the_same_for_every_family():
    pixels = np.arange(0, 256, 15, dtype=np.uint8)
    expected = (pixels.astype(np.float32) - 127.5) / 128.0
    for family in (models.sphere, mobilefacenet, iresnet):
        assert np.array_equal(family.preprocess_input(pixels), expected)


@pytest.mark.parametrize("family", [models.sphere, mobilefacenet, iresnet], ids=lambda f: f.__name__.rsplit(".")[-1])
def test_preprocess_input_in_a_graph_saves_and_loads(family, tmp_path):
    """Each family's `preprocess_input` is Keras-serializable: a `Lambda` of it round-trips in safe mode."""
    pixels = keras.Input((8, 6, 3), name="pixels")
    embeddings = keras.layers.Dense(4, name="embed")(keras.layers.Flatten()(
        keras.layers.Lambda(family.preprocess_input, name="preprocess")(pixels)))
    model = keras.Model(pixels, embeddings)
    path = tmp_path / "model.keras"
    model.save(path)
    loaded = keras.saving.load_model(path)  # safe_mode: a plain lambda would be refused here
    assert loaded.get_layer("preprocess").function is family.preprocess_input
    images = np.random.default_rng(0).integers(0, 256, (2, 8, 6, 3)).astype(np.float32)
    np.testing.assert_allclose(loaded.predict(images, verbose=0), model.predict(images, verbose=0), rtol=1e-6)


def test_each_family_registers_its_own_preprocess_input_name():
    names = {keras.saving.get_registered_name(f.preprocess_input) for f in (models.sphere, mobilefacenet, iresnet)}
    assert names == {f"keras_sphereface>{f}_preprocess_input" for f in ("sphere", "mobilefacenet", "iresnet")}
