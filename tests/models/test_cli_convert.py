"""`ksf convert` through click's CliRunner."""

from __future__ import annotations

import json

import numpy as np
import pytest
from click.testing import CliRunner

from keras_sphereface import models
from keras_sphereface.models import store as weights
from keras_sphereface.models.convert.caffe import save_caffemodel
from ksf.main import cli


def test_convert_caffe_to_a_weights_file(tmp_path):
    original = models.SphereNet((0, 0, 0, 0), input_shape=(32, 32, 3))
    rng = np.random.default_rng(2)
    for variable in original.weights:
        variable.assign(rng.normal(0, 0.1, variable.shape).astype(np.float32))
    save_caffemodel(original, tmp_path / "s4.caffemodel")
    out = tmp_path / "s4.weights.h5"
    result = CliRunner().invoke(cli, ["convert", "caffe", "sphere4", str(tmp_path / "s4.caffemodel"),
                                      "-o", str(out), "--input-shape", "32x32"])
    assert result.exit_code == 0, result.output
    loaded = models.Sphere4(weights=str(out), input_shape=(32, 32, 3))
    for a, b in zip(original.weights, loaded.weights, strict=True):
        assert np.array_equal(np.asarray(a), np.asarray(b))
    record = json.loads(weights.sidecar_path(out).read_text())
    assert record["source_sha256"] == weights.sha256_file(tmp_path / "s4.caffemodel")


def test_convert_errors_are_reported(tmp_path):
    path = tmp_path / "x.caffemodel"
    path.write_bytes(b"")
    runner = CliRunner()
    result = runner.invoke(cli, ["convert", "caffe", "sphere4", str(path)])
    assert result.exit_code != 0 and "give the output .weights.h5 path" in result.output
    result = runner.invoke(cli, ["convert", "caffe", "sphere4", str(path), "-o", "a.h5"])
    assert result.exit_code != 0 and "must end in .weights.h5" in result.output
    result = runner.invoke(cli, ["convert", "caffe", "vgg16", str(path), "-o", "a.weights.h5"])
    assert result.exit_code != 0 and "Received: model_name='vgg16'" in result.output
    result = runner.invoke(cli, ["convert", "torch-npz", "mobilefacenet", str(path), "--tag", "casia"])
    assert result.exit_code != 0 and "the registry says 4155466" in result.output  # registered size refuses it


@pytest.mark.slow
def test_convert_torch_npz_into_the_cache(shared_weights_dir):
    npz = shared_weights_dir / "mobilefacenet-casia" / "mobilefacenet_casia_arcface.npz"
    if not npz.is_file():
        pytest.skip("the shared MobileFaceNet checkpoint is not in KSF_WEIGHTS_DIR")
    result = CliRunner().invoke(cli, ["convert", "torch-npz", "mobilefacenet", str(npz), "--tag", "casia"])
    assert result.exit_code == 0, result.output
    cached = weights.cache_dir() / "mobilefacenet_casia.weights.h5"
    assert str(cached) in result.output
    assert json.loads(weights.sidecar_path(cached).read_text())["sha256"] == weights.sha256_file(cached)
