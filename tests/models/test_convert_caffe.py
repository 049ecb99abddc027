"""Caffe SphereFace models to Keras: files the tests write, an NCHW/BGR reference, exact round trips."""

from __future__ import annotations

import json

import keras
import numpy as np
import pytest

from keras_sphereface import models
from keras_sphereface.models import store as weights
from keras_sphereface.models.convert.caffe import load_caffemodel, save_caffemodel
from keras_sphereface.models.convert.caffe_proto import CaffeLayer, read_caffemodel, write_caffemodel
from tests.models import numpy_reference as ref


def _caffe_sphere4_layers(rng, embedding_dim, final_hw):
    """A Sphere-4 as Caffe stores it: OIHW convolutions with biases, PReLU slopes, fc5 (out, C*H*W)."""
    layers, in_c = [], 3
    for stage, filters in enumerate((64, 128, 256, 512), start=1):
        scale = 1.0 / np.sqrt(9 * in_c)
        layers.append(CaffeLayer(f"conv{stage}_1", "Convolution", [
            rng.normal(0, scale, (filters, in_c, 3, 3)).astype(np.float32),
            rng.normal(0, 0.1, filters).astype(np.float32)]))
        layers.append(CaffeLayer(f"relu{stage}_1", "PReLU", [rng.uniform(0.1, 0.4, filters).astype(np.float32)]))
        in_c = filters
    fan_in = 512 * final_hw[0] * final_hw[1]
    layers.append(CaffeLayer("fc5", "InnerProduct", [
        rng.normal(0, 1 / np.sqrt(fan_in), (embedding_dim, fan_in)).astype(np.float32),
        rng.normal(0, 0.1, embedding_dim).astype(np.float32)]))
    return layers


def _caffe_forward(layers, x_bgr_nchw):
    """Caffe's Sphere-4 forward on a BGR NCHW blob: pad 1 stride 2 convolutions, PReLU, fc5."""
    blobs = {layer.name: layer.blobs for layer in layers}
    x = x_bgr_nchw
    for stage in range(1, 5):
        weight, bias = blobs[f"conv{stage}_1"]
        x = ref.prelu(ref.conv2d(x, weight, bias, stride=2, pad=1), blobs[f"relu{stage}_1"][0])
    return ref.linear(x, *blobs["fc5"])


def test_caffe_sphere4_matches_caffe_computation_on_rgb_input(tmp_path):
    rng = np.random.default_rng(7)
    shape, embedding_dim = (48, 32, 3), 8  # final map 3x2: non-square, so the flatten order matters
    layers = _caffe_sphere4_layers(rng, embedding_dim, (3, 2))
    path = tmp_path / "sphere4.caffemodel"
    write_caffemodel(path, "sphere4", layers)
    model = models.SphereNet((0, 0, 0, 0), input_shape=shape, embedding_dim=embedding_dim)
    assert load_caffemodel(model, path) == []

    rgb = rng.uniform(0, 255, (2, *shape)).astype(np.float32)
    scaled = models.sphere.preprocess_input(rgb)
    bgr_nchw = scaled[..., ::-1].transpose(0, 3, 1, 2).astype(np.float64)
    expected = _caffe_forward(layers, bgr_nchw)
    got = keras.ops.convert_to_numpy(model(scaled))
    assert np.abs(got - expected).max() < 1e-4 * max(1.0, np.abs(expected).max())
    # Feeding BGR to the converted model is wrong, and measurably so.
    assert np.abs(keras.ops.convert_to_numpy(model(scaled[..., ::-1].copy())) - expected).max() > 1e-2


def test_rgb_order_loads_the_first_convolution_unchanged(tmp_path):
    rng = np.random.default_rng(8)
    layers = _caffe_sphere4_layers(rng, 4, (1, 1))
    write_caffemodel(tmp_path / "m.caffemodel", "m", layers)
    model = models.SphereNet((0, 0, 0, 0), input_shape=(16, 16, 3), embedding_dim=4)
    load_caffemodel(model, tmp_path / "m.caffemodel", input_channel_order="RGB")
    kernel = np.asarray(model.get_layer("conv1_1").kernel)
    assert np.array_equal(kernel, layers[0].blobs[0].transpose(2, 3, 1, 0))
    with pytest.raises(ValueError, match="input_channel_order"):
        load_caffemodel(model, tmp_path / "m.caffemodel", input_channel_order="YUV")


def _randomize(model, seed):
    rng = np.random.default_rng(seed)
    for variable in model.weights:
        variable.assign(rng.normal(0, 0.05, variable.shape).astype(np.float32))


@pytest.mark.slow
def test_sphere20_round_trip_is_exact_and_loads_by_tag(tmp_path, monkeypatch):
    """Sphere20 -> caffemodel -> Sphere20(weights='casia') through the search path: bit-exact."""
    original = models.Sphere20()
    _randomize(original, 1)
    source = tmp_path / "weights" / "sphereface" / "sphereface_model.caffemodel"
    source.parent.mkdir(parents=True)
    save_caffemodel(original, source)

    _, layers = read_caffemodel(source)
    shapes = {layer.name: [b.shape for b in layer.blobs] for layer in layers}
    assert shapes["conv1_1"] == [(64, 3, 3, 3), (64,)] and shapes["relu1_1"] == [(64,)]
    assert shapes["fc5"] == [(512, 512 * 7 * 6), (512,)] and len(shapes) == 20 + 20 + 1  # convs, PReLUs, fc5

    monkeypatch.setenv("KSF_WEIGHTS_DIR", str(tmp_path / "weights"))
    loaded = models.Sphere20(weights="casia")
    for a, b in zip(original.weights, loaded.weights, strict=True):
        assert np.array_equal(np.asarray(a), np.asarray(b)), a.path
    cached = weights.cache_dir() / "sphere20_casia.weights.h5"
    record = json.loads(weights.sidecar_path(cached).read_text())
    assert record["source_sha256"] == weights.sha256_file(source)
    assert record["source_sha256_registered"] is False
    assert record["sha256"] == weights.sha256_file(cached)


def test_missing_and_unused_layers(tmp_path):
    rng = np.random.default_rng(9)
    layers = _caffe_sphere4_layers(rng, 4, (1, 1))
    fc6 = CaffeLayer("fc6", "MarginInnerProduct", [rng.normal(size=(10, 4)).astype(np.float32)])
    write_caffemodel(tmp_path / "train.caffemodel", "train", [*layers, fc6])
    sphere4 = models.SphereNet((0, 0, 0, 0), input_shape=(16, 16, 3), embedding_dim=4)
    assert load_caffemodel(sphere4, tmp_path / "train.caffemodel") == ["fc6"]
    deeper = models.SphereNet((1, 0, 0, 0), input_shape=(16, 16, 3), embedding_dim=4)
    with pytest.raises(ValueError, match="no layer 'conv1_2'"):
        load_caffemodel(deeper, tmp_path / "train.caffemodel")
    wider = models.SphereNet((0, 0, 0, 0), input_shape=(16, 16, 3), embedding_dim=5)
    with pytest.raises(ValueError, match="fc5 weights"):
        load_caffemodel(wider, tmp_path / "train.caffemodel")
