"""The public names of keras_sphereface.data, and that alignment does not load TensorFlow."""

from __future__ import annotations

import subprocess
import sys

import keras_sphereface.data as data


def test_public_names_resolve():
    for name in data.__all__:
        assert getattr(data, name) is not None, name
    assert data.tfrecord_dataset.__module__ == "keras_sphereface.data.dataset"


def test_alignment_does_not_import_tensorflow():
    code = (
        "import sys, numpy as np; import keras_sphereface.data as d; "
        "d.align_face(np.zeros((150, 150, 3), np.uint8), d.SPHEREFACE_TEMPLATE + 20); "
        "print('tensorflow' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
