"""Fixtures for the export tests: a tiny model, real aligned LFW crops, and one real export shared by a session.

The real model is `MobileFaceNet(weights="casia")` converted from `$KSF_WEIGHTS_DIR` once per session
(into a session-wide `$KERAS_SPHEREFACE_HOME`), exported once through `ksf export` (the CLI), and
compared against by every test that needs real numbers.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest

# The first 4 same pairs of LFW View 2 fold 1, plus the first image of 2 different pairs: 8 real faces.
SAME_PAIRS = (("Abel_Pacheco", 1, 4), ("Akhmed_Zakayev", 1, 3), ("Akhmed_Zakayev", 2, 3))
OTHER_IMAGES = ("Amber_Tamblyn/Amber_Tamblyn_0001.jpg", "Anders_Fogh_Rasmussen/Anders_Fogh_Rasmussen_0001.jpg")
THRESHOLD_REPORT = {
    # The fields `ksf eval` writes that `--threshold-from` reads (a real report would also hold folds, ROC, ...).
    "protocol": "plain",
    "mean_threshold": 0.2412,
    "mean_accuracy": 0.985,
    "dataset": "LFW View 2 pairs.txt (test fixture)",
    "command": "ksf eval lfw --model mobilefacenet --weights casia --protocol plain",
}


def tiny_model(input_shape=(16, 12, 3), dim: int = 8, seed: int = 0, name: str = "tiny", dtype=None):
    """A small random CNN (`(batch, 16, 12, 3)` -> `(batch, 8)`), exported in about a second."""
    import keras

    keras.utils.set_random_seed(seed)
    inputs = keras.Input(shape=input_shape, name="image")
    x = keras.layers.Conv2D(4, 3, activation="relu", name="conv", dtype=dtype)(inputs)
    x = keras.layers.BatchNormalization(name="bn", dtype=dtype)(x)
    x = keras.layers.GlobalAveragePooling2D(name="pool", dtype=dtype)(x)
    outputs = keras.layers.Dense(dim, name="embedding", dtype=dtype)(x)
    return keras.Model(inputs, outputs, name=name)


def image_names() -> list[str]:
    """Relative LFW paths of the 8 test faces."""
    names = []
    for person, first, second in SAME_PAIRS:
        names += [f"{person}/{person}_{first:04d}.jpg", f"{person}/{person}_{second:04d}.jpg"]
    return sorted(set(names)) + list(OTHER_IMAGES)


def l2(x: np.ndarray) -> np.ndarray:
    """Row-wise L2 normalization in float64."""
    x = np.asarray(x, dtype=np.float64)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


@pytest.fixture(scope="session")
def lfw_crops(lfw_dir) -> tuple[list[str], np.ndarray]:
    """`(names, crops)`: 7 real LFW faces aligned to 112x96 with their landmarks, `uint8 (7, 112, 96, 3)`."""
    from keras_sphereface.data import align_face, load_image_rgb, read_landmarks

    landmarks = read_landmarks(lfw_dir / "landmarks.txt")
    names = image_names()
    crops = np.stack([align_face(load_image_rgb(lfw_dir / "images" / n), landmarks[n]) for n in names])
    return names, crops


@pytest.fixture(scope="session")
def session_home(tmp_path_factory) -> Path:
    """A `$KERAS_SPHEREFACE_HOME` shared by the session's real-weights fixtures."""
    return tmp_path_factory.mktemp("ksf_home_export")


@pytest.fixture(scope="session")
def casia_model(shared_weights_dir, session_home):
    """`MobileFaceNet(weights="casia")`, converted once per session."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("KERAS_SPHEREFACE_HOME", str(session_home))
        patch.setenv("KSF_WEIGHTS_DIR", str(shared_weights_dir))
        from keras_sphereface.models import MobileFaceNet

        return MobileFaceNet(weights="casia")


@pytest.fixture(scope="session")
def casia_reference(casia_model, lfw_crops) -> np.ndarray:
    """The Keras model's L2-normalized embeddings of `lfw_crops`, float64 `(7, 128)`."""
    from keras_sphereface.models.preprocessing import scale_pixels

    return l2(casia_model.predict(scale_pixels(lfw_crops[1]), verbose=0))


@pytest.fixture(scope="session")
def casia_export(casia_model, shared_weights_dir, session_home, tmp_path_factory, lfw_crops) -> dict:
    """One real export through `ksf export` (CLI), threshold from an eval report; paths and the crops as .npy.

    Returns a dict: `root` (export root), `version_dir`, `name`, `crops_npy`, `threshold`.
    """
    from click.testing import CliRunner

    from ksf.main import cli

    work = tmp_path_factory.mktemp("casia_export")
    report = work / "report.json"
    report.write_text(json.dumps(THRESHOLD_REPORT), encoding="utf-8")
    root = work / "exports"
    env = {"KERAS_SPHEREFACE_HOME": str(session_home), "KSF_WEIGHTS_DIR": str(shared_weights_dir)}
    with pytest.MonkeyPatch.context() as patch:
        for key, value in env.items():
            patch.setenv(key, value)
        result = CliRunner().invoke(cli, ["export", "--model", "mobilefacenet", "--weights", "casia",
                                          "--out", str(root), "--threshold-from", str(report)])
    assert result.exit_code == 0, result.output
    crops_npy = work / "crops.npy"
    np.save(crops_npy, lfw_crops[1].astype(np.float32))
    return {"root": root, "version_dir": root / "mobilefacenet" / "1", "name": "mobilefacenet",
            "crops_npy": crops_npy, "threshold": THRESHOLD_REPORT["mean_threshold"], "output": result.output}


@pytest.fixture(scope="session")
def loaded_export(casia_export):
    """`tf.saved_model.load` of the real export (in this process)."""
    import tensorflow as tf

    return tf.saved_model.load(str(casia_export["version_dir"]))


def subprocess_env() -> dict:
    """The environment for child Python processes: quiet TensorFlow, same interpreter paths."""
    env = dict(os.environ)
    env.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    return env
