"""Weights files that are truncated, not HDF5 or random: a clear ValueError naming the file, no crash.

`load_model_weights` (every builder's `weights=`) wraps h5py's bare `OSError: Unable to synchronously
open file (truncated file: eof = ...)` into a message that names the file, says what is wrong and,
for a cached tag, how to get a good copy back.
"""

from __future__ import annotations

import json

import keras
import numpy as np
import pytest

from keras_sphereface import models
from keras_sphereface.models import registry, store
from keras_sphereface.utils.atomic import sha256_file


@pytest.fixture(scope="module")
def good_weights(tmp_path_factory):
    """A real `.weights.h5` of MobileFaceNet (random weights, as `model.save_weights` writes it)."""
    path = tmp_path_factory.mktemp("weights") / "mfn.weights.h5"
    models.MobileFaceNet().save_weights(path)
    return path


def _damaged(good: bytes, kind: str) -> bytes:
    if kind == "truncated":
        return good[: len(good) // 2]
    if kind == "header_only":
        return good[:512]
    if kind == "text":
        return b"this is not HDF5, it is a text file someone renamed\n" * 20
    if kind == "random":
        return np.random.default_rng(0).integers(0, 256, 4096, dtype=np.uint8).tobytes()
    if kind == "empty":
        return b""
    raise AssertionError(kind)


@pytest.mark.parametrize("kind", ["truncated", "header_only", "text", "random", "empty"])
def test_bad_file_path_gives_a_value_error_naming_the_file(good_weights, tmp_path, kind):
    bad = tmp_path / f"{kind}.weights.h5"
    bad.write_bytes(_damaged(good_weights.read_bytes(), kind))
    with pytest.raises(ValueError) as info:
        models.MobileFaceNet(weights=bad)
    message = str(info.value)
    assert f"Cannot load weights file {bad}" in message
    assert "truncated, not HDF5, or not a Keras weights file" in message
    assert "copied completely" in message and f"Received: weights={str(bad)!r}" in message


@pytest.mark.filterwarnings("ignore:Skipping")
def test_hdf5_weights_of_another_model_are_named(tmp_path):
    other = tmp_path / "dense.weights.h5"
    inputs = keras.Input((4,))
    keras.Model(inputs, keras.layers.Dense(2)(inputs)).save_weights(other)  # valid HDF5, wrong model
    with pytest.raises(ValueError, match=rf"Cannot load weights file {other}.*not a Keras weights file for"):
        models.MobileFaceNet(weights=other)


@pytest.fixture
def local_tag(good_weights, tmp_path, monkeypatch):
    """A registry of our own whose tag `local` points at a cached copy of `good_weights`."""
    cached = store.cache_dir() / "mfn_local.weights.h5"
    cached.parent.mkdir(parents=True, exist_ok=True)
    cached.write_bytes(good_weights.read_bytes())
    entry = {"model": "MobileFaceNet", "tag": "local", "file": cached.name, "sha256": sha256_file(cached),
             "size": cached.stat().st_size, "url": None, "input_size": [112, 96], "preprocessing": {},
             "training_data": "none", "licence": "test"}
    registry_path = tmp_path / "registry.json"
    registry_path.write_text(json.dumps({"entries": [entry]}))
    monkeypatch.setattr(registry, "REGISTRY_FILE", registry_path)
    monkeypatch.delenv("KSF_WEIGHTS_DIR", raising=False)
    return cached


def test_truncated_cached_tag_file_says_how_to_remove_it(local_tag):
    models.MobileFaceNet(weights="local")  # the good copy loads
    local_tag.write_bytes(local_tag.read_bytes()[:1000])
    with pytest.raises(store.ChecksumError) as info:
        models.MobileFaceNet(weights="local")
    message = str(info.value)
    assert isinstance(info.value, ValueError)
    assert str(local_tag) in message and "truncated or wrong file" in message and "Delete it" in message


def test_truncated_converted_cache_file_will_be_converted_again(good_weights, monkeypatch):
    """A converted tag's cache whose sidecar matches a damaged file (e.g. a disk that lost its tail after
    the sidecar was written): the load fails naming the file and saying it is re-made once deleted."""
    entry = registry.get_entry("MobileFaceNet", "casia")
    cached = store.cache_dir() / entry.file
    cached.parent.mkdir(parents=True, exist_ok=True)
    cached.write_bytes(good_weights.read_bytes()[:3000])
    store.write_sidecar(cached, {"model": entry.model})
    monkeypatch.delenv("KSF_WEIGHTS_DIR", raising=False)
    with pytest.raises(ValueError) as info:
        models.MobileFaceNet(weights="casia")
    message = str(info.value)
    assert f"Cannot load weights file {cached}" in message
    assert "MobileFaceNet(weights='casia')" in message
    assert "delete it and it will be fetched or converted again" in message
