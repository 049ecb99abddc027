"""The zoo table, its consumers, and weights registered under tags of your own."""

from __future__ import annotations

import json
import subprocess
import sys

import keras
import numpy as np
import pytest

from keras_sphereface import models
from keras_sphereface.models import registry, store, zoo
from keras_sphereface.models.complexity import zoo_table
from keras_sphereface.models.convert.torch_names import TORCH_LAYOUTS


def test_zoo_names_are_the_lower_case_builder_names():
    assert list(zoo.MODEL_NAMES) == [spec.builder_name.lower() for spec in zoo.ZOO.values()]
    for spec in zoo.ZOO.values():
        assert getattr(models, spec.builder_name) is spec.builder
        assert spec.torch_layout is None or spec.torch_layout in TORCH_LAYOUTS
    assert zoo.get_model_spec("MobileFaceNet") is zoo.get_model_spec("mobilefacenet")
    with pytest.raises(ValueError, match=r"Unknown model; use one of \['sphere4'.*Received: model='vgg'"):
        zoo.get_model_spec("vgg")


def test_every_registry_entry_names_a_zoo_builder():
    builder_names = {spec.builder_name for spec in zoo.ZOO.values()}
    assert {entry.model for entry in registry.load_registry()} <= builder_names


@pytest.mark.parametrize("name", ["sphere4", "mobilefacenet", "iresnet18"])
def test_spec_builds_at_its_default_input_size(name):
    spec = zoo.get_model_spec(name)
    model = spec.build()
    assert tuple(model.input_shape[1:]) == spec.input_shape
    pixels = np.array([[0.0, 127.5, 255.0]])
    np.testing.assert_allclose(spec.preprocess_input(pixels), (pixels - 127.5) / 128.0)


@pytest.mark.slow
def test_mac_table_lists_every_zoo_model():
    table = zoo_table()
    for spec in zoo.ZOO.values():
        assert f"| {spec.builder_name} | {spec.input_size[0]}x{spec.input_size[1]} |" in table


def test_a_tags_input_size_is_checked_before_building(monkeypatch):
    built = []
    monkeypatch.setattr(keras, "Model", lambda *a, **k: built.append(1))
    with pytest.raises(ValueError, match=r"for input size \(112, 96\).*Received: input_shape=\(112, 112\)"):
        models.MobileFaceNet(weights="casia", input_shape=(112, 112, 3))
    assert not built


def _random_sphere4(tmp_path, seed=0):
    model = models.Sphere4(input_shape=(32, 32, 3), embedding_dim=16)
    rng = np.random.default_rng(seed)
    for variable in model.weights:
        variable.assign(rng.normal(0, 0.05, variable.shape).astype(np.float32))
    path = tmp_path / "trained.weights.h5"
    model.save_weights(path)
    return model, path


def test_registered_tag_loads_in_a_fresh_process(tmp_path):
    model, path = _random_sphere4(tmp_path)
    cached = models.register_weights("sphere4", "my-lfw", path, input_size=(32, 32), embedding_dim=16,
                                     training_data="LFW peopleDevTrain", loss="A-Softmax m=4")
    assert cached.parent == store.cache_dir() and cached.read_bytes() == path.read_bytes()
    entry = registry.get_entry("Sphere4", "my-lfw")
    assert entry.sha256 is not None and entry.input_size == (32, 32)
    x = np.random.default_rng(1).uniform(-1, 1, (2, 32, 32, 3)).astype(np.float32)
    np.save(tmp_path / "x.npy", x)
    path.unlink()  # the cache holds its own copy
    script = ("import numpy as np\nfrom keras_sphereface.models import Sphere4\n"
              "m = Sphere4(weights='my-lfw', input_shape=(32, 32, 3), embedding_dim=16)\n"
              "np.save('out.npy', m.predict(np.load('x.npy'), verbose=0))\n")
    subprocess.run([sys.executable, "-c", script], check=True, cwd=tmp_path, capture_output=True)
    np.testing.assert_allclose(np.load(tmp_path / "out.npy"), model.predict(x, verbose=0), atol=1e-5)


def test_registered_file_is_verified_on_load(tmp_path):
    _, path = _random_sphere4(tmp_path)
    cached = models.register_weights("sphere4", "mine", path, input_size=(32, 32), embedding_dim=16)
    data = bytearray(cached.read_bytes())
    data[-100] ^= 0xFF
    cached.write_bytes(bytes(data))
    with pytest.raises(models.ChecksumError, match="SHA-256"):
        models.Sphere4(weights="mine", input_shape=(32, 32, 3), embedding_dim=16)


def test_register_refuses_shipped_tags_bad_tags_and_files_that_do_not_fit(tmp_path):
    _, path = _random_sphere4(tmp_path)
    with pytest.raises(ValueError, match="letters, digits"):
        models.register_weights("sphere4", "a b", path, input_size=(32, 32), embedding_dim=16)
    with pytest.raises(ValueError, match="Cannot load weights file"):
        models.register_weights("sphere4", "wrong", path)  # default 112x96, 512-d: does not fit
    mfn = models.MobileFaceNet()
    mfn_path = tmp_path / "mfn.weights.h5"
    mfn.save_weights(mfn_path)
    with pytest.raises(ValueError, match="shipped tag"):
        models.register_weights("mobilefacenet", "casia", mfn_path)
    assert not registry.local_registry_path().exists() or not json.loads(
        registry.local_registry_path().read_text())["entries"]
