"""PyTorch `.npz` state dicts to Keras: the real MobileFaceNet checkpoint and an independent NCHW reference."""

from __future__ import annotations

import keras
import numpy as np
import pytest

from keras_sphereface import models
from keras_sphereface.models import iresnet, mobilefacenet
from keras_sphereface.models.convert.torch_npz import convert_state_dict, load_torch_npz, torch_layer_names
from tests.models import numpy_reference as ref

NPZ = "mobilefacenet-casia/mobilefacenet_casia_arcface.npz"
REFERENCE = "mobilefacenet-casia/reference_io.npz"


@pytest.fixture(scope="module")
def mobilefacenet_state(shared_weights_dir):
    path = shared_weights_dir / NPZ
    if not path.is_file():
        pytest.skip(f"{NPZ} is not in KSF_WEIGHTS_DIR")
    with np.load(path) as data:
        return {key: data[key] for key in data.files}


def test_mobilefacenet_structure_takes_every_tensor(mobilefacenet_state):
    model = models.MobileFaceNet()
    names = torch_layer_names(model, "mobilefacenet")
    prefixes = {key.rsplit(".", 1)[0] for key in mobilefacenet_state}
    assert set(names.values()) == prefixes
    numbers = sum(v.size for v in mobilefacenet_state.values())
    assert model.count_params() == numbers == 1_019_136


@pytest.mark.slow
def test_converted_mobilefacenet_reproduces_the_pytorch_embeddings(shared_weights_dir):
    reference = np.load(shared_weights_dir / REFERENCE)
    model = models.MobileFaceNet()
    load_torch_npz(model, shared_weights_dir / NPZ, "mobilefacenet")
    images = reference["images_rgb_uint8"]
    assert images.shape == (8, 112, 96, 3) and images.dtype == np.uint8
    embeddings = model.predict(mobilefacenet.preprocess_input(images), verbose=0)
    error = np.abs(embeddings - reference["embeddings"]).max()
    assert error <= 1e-4, f"max abs error {error}"
    # The check is sharp: a one-pixel shift of the input (a padding mistake's size) breaks it.
    shifted = model.predict(mobilefacenet.preprocess_input(np.roll(images, 1, axis=2)), verbose=0)
    assert np.abs(shifted - reference["embeddings"]).max() > 1e-2


def test_strict_mapping_reports_missing_extra_and_misshapen_tensors(mobilefacenet_state):
    model = models.MobileFaceNet()
    names = torch_layer_names(model, "mobilefacenet")
    missing = {k: v for k, v in mobilefacenet_state.items() if k != "linear1.bn.running_var"}
    with pytest.raises(ValueError, match=r"linear1\.bn\.running_var"):
        convert_state_dict(missing, model, names)
    extra = {**mobilefacenet_state, "fc.weight": np.zeros((2, 2), np.float32)}
    with pytest.raises(ValueError, match=r"not used.*fc\.weight"):
        convert_state_dict(extra, model, names)
    wrong = {**mobilefacenet_state, "conv2.conv.weight": np.zeros((512, 64, 1, 1), np.float32)}
    with pytest.raises(ValueError, match="Shape mismatch for conv2_conv"):
        convert_state_dict(wrong, model, names)


def _random_iresnet_state(rng, units, embedding_dim, hw):
    """A PyTorch-named IResNet state dict with PyTorch shapes, written from the insightface layout."""
    state = {}

    def bn(name, channels):
        state[f"{name}.weight"] = rng.uniform(0.5, 1.5, channels).astype(np.float32)
        state[f"{name}.bias"] = rng.normal(0, 0.1, channels).astype(np.float32)
        state[f"{name}.running_mean"] = rng.normal(0, 0.1, channels).astype(np.float32)
        state[f"{name}.running_var"] = rng.uniform(0.5, 1.5, channels).astype(np.float32)
        state[f"{name}.num_batches_tracked"] = np.array(7)

    def conv(name, out_c, in_c, k):
        state[f"{name}.weight"] = rng.normal(0, 0.2, (out_c, in_c, k, k)).astype(np.float32)

    conv("conv1", 64, 3, 3)
    bn("bn1", 64)
    state["prelu.weight"] = rng.uniform(0.1, 0.3, 64).astype(np.float32)
    in_c = 64
    for stage, (planes, count) in enumerate(zip((64, 128, 256, 512), units, strict=True), start=1):
        for unit in range(count):
            name = f"layer{stage}.{unit}"
            bn(f"{name}.bn1", in_c)
            conv(f"{name}.conv1", planes, in_c, 3)
            bn(f"{name}.bn2", planes)
            state[f"{name}.prelu.weight"] = rng.uniform(0.1, 0.3, planes).astype(np.float32)
            conv(f"{name}.conv2", planes, planes, 3)
            bn(f"{name}.bn3", planes)
            if unit == 0:
                conv(f"{name}.downsample.0", planes, in_c, 1)
                bn(f"{name}.downsample.1", planes)
            in_c = planes
    bn("bn2", 512)
    state["fc.weight"] = rng.normal(0, 0.05, (embedding_dim, 512 * hw[0] * hw[1])).astype(np.float32)
    state["fc.bias"] = rng.normal(0, 0.1, embedding_dim).astype(np.float32)
    bn("features", embedding_dim)
    state["features.weight"] = np.ones(embedding_dim, np.float32)  # insightface fixes it at 1
    return state


def _iresnet_forward_nchw(state, x, units):
    """insightface's IResNet forward (eval mode), channels-first."""
    def bn(name, t):
        return ref.batchnorm(t, state[f"{name}.weight"], state[f"{name}.bias"], state[f"{name}.running_mean"],
                             state[f"{name}.running_var"])

    x = ref.prelu(bn("bn1", ref.conv2d(x, state["conv1.weight"], None, 1, 1)), state["prelu.weight"])
    for stage, count in enumerate(units, start=1):
        for unit in range(count):
            name, stride = f"layer{stage}.{unit}", 2 if unit == 0 else 1
            out = ref.conv2d(bn(f"{name}.bn1", x), state[f"{name}.conv1.weight"], None, 1, 1)
            out = ref.prelu(bn(f"{name}.bn2", out), state[f"{name}.prelu.weight"])
            out = bn(f"{name}.bn3", ref.conv2d(out, state[f"{name}.conv2.weight"], None, stride, 1))
            if unit == 0:
                x = bn(f"{name}.downsample.1", ref.conv2d(x, state[f"{name}.downsample.0.weight"], None, stride, 0))
            x = out + x
    x = bn("bn2", x)
    return bn("features", ref.linear(x, state["fc.weight"], state["fc.bias"]))


def test_iresnet_conversion_matches_an_nchw_reference():
    rng = np.random.default_rng(3)
    units, shape = (1, 1, 1, 1), (32, 48, 3)
    state = _random_iresnet_state(rng, units, 16, (2, 3))
    model = iresnet.IResNet(units, input_shape=shape, embedding_dim=16)
    convert_state_dict(state, model, torch_layer_names(model, "iresnet"))
    image = rng.uniform(-1, 1, (2, *shape)).astype(np.float32)
    expected = _iresnet_forward_nchw(state, image.transpose(0, 3, 1, 2).astype(np.float64), units)
    got = keras.ops.convert_to_numpy(model(image))
    assert np.abs(got - expected).max() < 1e-3 * max(1.0, np.abs(expected).max())


def test_iresnet_fixed_feature_scale_must_be_one():
    rng = np.random.default_rng(4)
    state = _random_iresnet_state(rng, (1, 1, 1, 1), 8, (1, 1))
    state["features.weight"] = np.full(8, 2.0, np.float32)
    model = iresnet.IResNet((1, 1, 1, 1), input_shape=(16, 16, 3), embedding_dim=8)
    with pytest.raises(ValueError, match="fixed scale of 1"):
        convert_state_dict(state, model, torch_layer_names(model, "iresnet"))


def test_unknown_architecture():
    with pytest.raises(ValueError, match="Received: architecture='vgg'"):
        torch_layer_names(models.MobileFaceNet(), "vgg")
