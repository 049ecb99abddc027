"""Shared fixtures: where real data and weights live, and backend-dependent skipping."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]


def _env_path(variable: str) -> Path | None:
    value = os.environ.get(variable)
    return Path(value) if value else None


@pytest.fixture(scope="session")
def lfw_dir() -> Path:
    """`$KSF_DATA_DIR/lfw` (images/, pairs.txt, landmarks.txt, ...); skips when unset."""
    root = _env_path("KSF_DATA_DIR")
    if root is None:
        pytest.skip("KSF_DATA_DIR is not set (.ci/run sets it to ../shared/data)")
    path = root / "lfw"
    if not (path / "landmarks.txt").is_file():
        pytest.skip(f"KSF_DATA_DIR has no lfw/landmarks.txt: {path}")
    return path


@pytest.fixture(scope="session")
def shared_weights_dir() -> Path:
    """`$KSF_WEIGHTS_DIR`; skips when unset."""
    root = _env_path("KSF_WEIGHTS_DIR")
    if root is None:
        pytest.skip("KSF_WEIGHTS_DIR is not set (.ci/run sets it to ../shared/weights)")
    return root


@pytest.fixture(autouse=True)
def _isolated_weights_cache(tmp_path_factory, monkeypatch):
    """Every test gets its own empty `$KERAS_SPHEREFACE_HOME`, so none relies on another's cache."""
    monkeypatch.setenv("KERAS_SPHEREFACE_HOME", str(tmp_path_factory.mktemp("ksf_home")))


def pytest_collection_modifyitems(config, items):
    import keras

    if keras.backend.backend() == "tensorflow":
        return
    skip = pytest.mark.skip(reason=f"needs the TensorFlow backend; running {keras.backend.backend()}")
    for item in items:
        if "tf_backend" in item.keywords:
            item.add_marker(skip)
