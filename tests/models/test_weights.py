"""`weights=`: the registry, the cache and search path, checksummed downloads, offline errors."""

from __future__ import annotations

import configparser
import json
import os
import subprocess
import sys
from pathlib import Path

import keras
import numpy as np
import pytest

from keras_sphereface import models
from keras_sphereface.models import mobilefacenet, registry, resolver, store
from keras_sphereface.utils.atomic import sha256_file

REPO = Path(__file__).resolve().parents[2]
NPZ = "mobilefacenet-casia/mobilefacenet_casia_arcface.npz"
NPZ_SHA256 = "98c0088d53c0a6662725a73bd267d3272534916d6903624897639ef8fb3215ba"  # the shared README's


# --- the registry ----------------------------------------------------------------------------------


def test_registry_ships_inside_the_package_and_is_declared_as_package_data():
    assert registry.REGISTRY_FILE.parent == Path(models.__file__).parent
    config = configparser.ConfigParser()
    config.read(REPO / "setup.cfg")
    assert "registry.json" in config["options.package_data"]["keras_sphereface.models"]
    assert "keras_sphereface/models/registry.json" in (REPO / "pretrained" / "README.md").read_text()


def test_registry_entries_are_complete():
    entries = registry.load_registry()
    assert {(e.model, e.tag) for e in entries} >= {("MobileFaceNet", "casia"), ("Sphere20", "casia")}
    for entry in entries:
        raw = entry.raw
        for key in ("preprocessing", "training_data", "licence", "lfw", "convert_command", "input_size"):
            assert raw[key], (entry.model, key)
        assert raw["preprocessing"]["channel_order"].startswith("RGB")
        assert "lfw" in raw and {"accuracy", "command"} <= set(raw["lfw"])
        assert getattr(models, entry.model)().count_params() == raw["parameters"]
        keras.backend.clear_session()
        if raw["lfw"]["accuracy"] is not None:  # a measured figure always comes with its command
            assert raw["lfw"]["command"].startswith("ksf eval lfw")
    lfw = registry.get_entry("MobileFaceNet", "casia").raw["lfw"]
    assert lfw["accuracy"] is None or lfw["accuracy"] >= 0.989  # the bar
    mfn = registry.get_entry("MobileFaceNet", "casia")
    assert mfn.source.sha256 == NPZ_SHA256 and mfn.source.size == 4_155_466 and mfn.source.file == NPZ
    caffe = registry.get_entry("Sphere20", "casia")
    assert caffe.source.format == "caffe" and caffe.source.sha256 is None
    assert caffe.source.options == {"input_channel_order": "BGR"}


def test_duplicate_and_incomplete_entries_are_refused(tmp_path):
    entry = {"model": "M", "tag": "t", "file": "f", "input_size": [1, 1], "preprocessing": {},
             "training_data": "x", "licence": "y"}
    path = tmp_path / "registry.json"
    path.write_text(json.dumps({"entries": [entry, entry]}))
    with pytest.raises(ValueError, match="two entries"):
        registry.load_registry(path)
    path.write_text(json.dumps({"entries": [{"model": "M", "tag": "t"}]}))
    with pytest.raises(ValueError, match="lacks the fields"):
        registry.load_registry(path)


# --- MobileFaceNet(weights="casia") from the shared checkpoint ------------------------------------


@pytest.fixture()
def reference(shared_weights_dir):
    if not (shared_weights_dir / NPZ).is_file():
        pytest.skip(f"{NPZ} is not in KSF_WEIGHTS_DIR")
    data = np.load(shared_weights_dir / "mobilefacenet-casia" / "reference_io.npz")
    return mobilefacenet.preprocess_input(data["images_rgb_uint8"]), data["embeddings"]


@pytest.mark.slow
def test_tag_works_in_a_fresh_process_with_an_empty_cache(reference, tmp_path):
    home = Path(os.environ["KERAS_SPHEREFACE_HOME"])
    assert not home.exists() or not any(home.iterdir())
    np.save(tmp_path / "x.npy", reference[0])
    script = (
        "import numpy as np\n"
        "from keras_sphereface.models import MobileFaceNet\n"
        f"x = np.load({str(tmp_path / 'x.npy')!r})\n"
        "np.save('out.npy', MobileFaceNet(weights='casia').predict(x, verbose=0))\n"
    )
    subprocess.run([sys.executable, "-c", script], check=True, cwd=tmp_path, capture_output=True)
    assert np.abs(np.load(tmp_path / "out.npy") - reference[1]).max() <= 1e-4
    cached = home / "weights" / "mobilefacenet_casia.weights.h5"
    record = json.loads(store.sidecar_path(cached).read_text())
    assert record["sha256"] == sha256_file(cached) and record["size"] == cached.stat().st_size
    assert record["source_sha256"] == NPZ_SHA256 and record["source_sha256_registered"] is True
    assert not [p for p in cached.parent.iterdir() if p.name.startswith(".")]  # no temporaries left


@pytest.mark.slow
def test_tag_path_and_keras_file_give_the_same_embeddings(reference, tmp_path):
    images, _ = reference
    by_tag = models.MobileFaceNet(weights="casia")
    cached = store.cache_dir() / "mobilefacenet_casia.weights.h5"
    by_path = models.MobileFaceNet(weights=str(cached))
    by_tag.save(tmp_path / "mfn.keras")
    reloaded = keras.saving.load_model(tmp_path / "mfn.keras")
    a, b, c = (keras.ops.convert_to_numpy(m(images)) for m in (by_tag, by_path, reloaded))
    assert np.abs(a - b).max() <= 1e-5 and np.abs(a - c).max() <= 1e-5
    assert np.abs(a).max() > 0.1  # real embeddings, not zeros
    # Loaded again from the now-filled cache: verified against the sidecar, not converted again.
    stamp = cached.stat().st_mtime_ns
    again = models.MobileFaceNet(weights="casia")
    assert cached.stat().st_mtime_ns == stamp
    assert np.abs(keras.ops.convert_to_numpy(again(images)) - a).max() == 0


def test_offline_error_names_the_file_the_places_and_the_remedy(tmp_path, monkeypatch):
    empty = tmp_path / "nothing_here"
    empty.mkdir()
    monkeypatch.setenv("KSF_WEIGHTS_DIR", str(empty))
    with pytest.raises(store.WeightsNotFoundError) as error:
        models.MobileFaceNet(weights="casia")
    message = str(error.value)
    for expected in ("mobilefacenet_casia_arcface.npz", str(empty), str(store.cache_dir()),
                     "$KSF_WEIGHTS_DIR", "ksf convert torch-npz", "No download URL"):
        assert expected in message, expected
    monkeypatch.delenv("KSF_WEIGHTS_DIR")
    with pytest.raises(store.WeightsNotFoundError, match=r"\$KSF_WEIGHTS_DIR is not set"):
        models.MobileFaceNet(weights="casia")


@pytest.mark.parametrize(("damage", "pattern"), [("truncate", "bytes"), ("flip", "SHA-256")])
def test_corrupt_source_checkpoint_is_refused(shared_weights_dir, tmp_path, monkeypatch, damage, pattern):
    source = shared_weights_dir / NPZ
    if not source.is_file():
        pytest.skip(f"{NPZ} is not in KSF_WEIGHTS_DIR")
    data = bytearray(source.read_bytes())
    if damage == "truncate":
        data = data[:-100]
    else:
        data[len(data) // 2] ^= 0xFF
    bad = tmp_path / NPZ
    bad.parent.mkdir(parents=True)
    bad.write_bytes(bytes(data))
    monkeypatch.setenv("KSF_WEIGHTS_DIR", str(tmp_path))
    with pytest.raises(store.ChecksumError, match=f"{pattern}.*Received"):
        models.MobileFaceNet(weights="casia")
    assert not (store.cache_dir() / "mobilefacenet_casia.weights.h5").exists()


def test_wrong_input_size_for_the_weights():
    with pytest.raises(ValueError, match=r"input_shape=\(112, 96, 3\)"):
        models.MobileFaceNet(weights="casia", input_shape=(112, 112, 3))


# --- downloads and the cache, with a registry of our own ---------------------------------------------


@pytest.fixture()
def served(tmp_path, monkeypatch):
    """Random MobileFaceNet weights 'served' at a file:// URL, and a registry entry pointing at them."""
    model = models.MobileFaceNet()
    rng = np.random.default_rng(0)
    for variable in model.weights:
        variable.assign(rng.uniform(0.5, 1.0, variable.shape).astype(np.float32))
    path = tmp_path / "server" / "mfn_web.weights.h5"
    path.parent.mkdir()
    model.save_weights(path)
    entry = {"model": "MobileFaceNet", "tag": "web", "file": "mfn_web.weights.h5",
             "sha256": sha256_file(path), "size": path.stat().st_size, "url": path.as_uri(),
             "input_size": [112, 96], "preprocessing": {}, "training_data": "none", "licence": "test"}
    registry_path = tmp_path / "registry.json"
    registry_path.write_text(json.dumps({"entries": [entry]}))
    monkeypatch.setattr(registry, "REGISTRY_FILE", registry_path)
    monkeypatch.delenv("KSF_WEIGHTS_DIR", raising=False)
    return model, path


def test_download_verifies_and_caches(served):
    model, path = served
    loaded = models.MobileFaceNet(weights="web")
    for a, b in zip(model.weights, loaded.weights, strict=True):
        assert np.array_equal(np.asarray(a), np.asarray(b))
    cached = store.cache_dir() / "mfn_web.weights.h5"
    assert sha256_file(cached) == sha256_file(path)
    path.unlink()  # offline now: the verified cache is enough
    models.MobileFaceNet(weights="web")


def test_corrupt_download_is_refused_and_not_cached(served):
    _, path = served
    data = bytearray(path.read_bytes())
    data[-10] ^= 0xFF
    path.write_bytes(bytes(data))
    with pytest.raises(store.ChecksumError, match=r"SHA-256 is [0-9a-f]{64}, expected"):
        models.MobileFaceNet(weights="web")
    assert list(store.cache_dir().iterdir()) == []


def test_unreachable_url_reports_it(served):
    _, path = served
    path.unlink()
    with pytest.raises(store.WeightsNotFoundError, match="Download of file://"):
        models.MobileFaceNet(weights="web")


def test_corrupt_cache_file_is_refused(served):
    models.MobileFaceNet(weights="web")
    cached = store.cache_dir() / "mfn_web.weights.h5"
    with open(cached, "r+b") as handle:
        handle.seek(100)
        handle.write(b"\x00" * 8)
    with pytest.raises(store.ChecksumError, match="mfn_web.weights.h5"):
        models.MobileFaceNet(weights="web")


def test_download_refuses_to_run_without_a_checksum(tmp_path):
    with pytest.raises(ValueError, match="without a SHA-256"):
        store.download("file:///x", tmp_path / "x", sha256=None)


def test_converted_cache_is_verified_against_its_sidecar(tmp_path):
    entry = registry.get_entry("MobileFaceNet", "casia")
    target = store.cache_dir() / entry.file
    target.parent.mkdir(parents=True)
    target.write_bytes(b"converted weights")
    assert resolver._verified(target, entry) is False  # no sidecar: an interrupted conversion
    store.write_sidecar(target, {"model": entry.model})
    assert resolver._verified(target, entry) is True
    target.write_bytes(b"converted weightz")
    with pytest.raises(store.ChecksumError, match="checksum recorded in"):
        resolver._verified(target, entry)


def test_weights_home_default_and_search_path(monkeypatch, tmp_path):
    monkeypatch.delenv("KERAS_SPHEREFACE_HOME")
    assert store.weights_home() == Path("~/.keras/keras_sphereface").expanduser()
    monkeypatch.setenv("KSF_WEIGHTS_DIR", f"{tmp_path / 'a'}{os.pathsep}{tmp_path / 'b'}")
    assert store.search_dirs() == [tmp_path / "a", tmp_path / "b"]
