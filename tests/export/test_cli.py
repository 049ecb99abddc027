"""`ksf embed` / `ksf verify` / `ksf export` through click's CliRunner, on real LFW images and the real export."""

from __future__ import annotations

import csv
import io

import numpy as np
import pytest
from click.testing import CliRunner

from ksf.main import cli
from tests.export.conftest import image_names

pytestmark = [pytest.mark.large, pytest.mark.tf_backend]


def _run(args):
    return CliRunner().invoke(cli, [str(a) for a in args])


def test_verify_same_and_different_pairs_through_the_export(casia_export, lfw_dir):
    images, landmarks = lfw_dir / "images", lfw_dir / "landmarks.txt"
    model = casia_export["root"] / "mobilefacenet"  # base folder: its latest version
    same = _run(["verify", images / "Abel_Pacheco/Abel_Pacheco_0001.jpg", images / "Abel_Pacheco/Abel_Pacheco_0004.jpg",
                 "--model", model, "--landmarks", landmarks])
    assert same.exit_code == 0, same.output
    assert "same person" in same.output and "0.2412 from the export's contract" in same.output
    assert "protocol plain" in same.output and "LFW" in same.output
    different = _run(["verify", images / "Abel_Pacheco/Abel_Pacheco_0001.jpg",
                      images / "Amber_Tamblyn/Amber_Tamblyn_0001.jpg", "--model", model, "--landmarks", landmarks,
                      "--threshold", "0.5"])
    assert different.exit_code == 0, different.output
    assert "different people" in different.output and "given on the command line" in different.output


def test_embed_with_landmarks_matches_keras_and_lists_failures(casia_export, casia_reference, lfw_dir, tmp_path):
    images = lfw_dir / "images"
    broken = tmp_path / "broken.jpg"
    broken.write_bytes(b"not an image")
    inputs = [images / n for n in image_names()] + [broken]
    out = tmp_path / "emb.npy"
    result = _run(["embed", *inputs, "--model", casia_export["version_dir"], "--landmarks",
                   lfw_dir / "landmarks.txt", "--out", out])
    assert result.exit_code == 1  # one image had no embedding: listed, not dropped
    assert "7 of 8 images embedded" in result.output and "broken.jpg: unreadable image" in result.output
    matrix = np.load(out)
    assert matrix.shape == (8, 128) and np.isnan(matrix[7]).all()
    np.testing.assert_allclose(matrix[:7], casia_reference, atol=1e-5)
    index = (tmp_path / "emb.index.tsv").read_text().splitlines()
    assert index[0] == "row\tpath\tstatus" and index[1].endswith("\tok") and "unreadable" in index[8]


def test_embed_csv_on_stdout_with_a_zoo_model(casia_export, lfw_dir, shared_weights_dir, session_home,
                                             monkeypatch):
    monkeypatch.setenv("KERAS_SPHEREFACE_HOME", str(session_home))
    monkeypatch.setenv("KSF_WEIGHTS_DIR", str(shared_weights_dir))
    folder = lfw_dir / "images" / "Abel_Pacheco"
    result = _run(["embed", folder, "--model", "mobilefacenet", "--weights", "casia",
                   "--landmarks", lfw_dir / "landmarks.txt"])
    assert result.exit_code == 0, result.output
    rows = list(csv.reader(io.StringIO(result.stdout)))
    assert rows[0][:3] == ["path", "status", "e0"] and len(rows[0]) == 2 + 128
    assert len(rows) == 1 + len(list(folder.glob("*.jpg")))
    vector = np.array(rows[1][2:], dtype=np.float64)
    assert rows[1][1] == "ok" and abs(np.linalg.norm(vector) - 1.0) < 1e-5


def test_aligned_input_of_the_wrong_size_is_refused(casia_export, lfw_dir):
    image = lfw_dir / "images" / "Abel_Pacheco/Abel_Pacheco_0001.jpg"  # 150x150, not an aligned 112x96 crop
    result = _run(["verify", image, image, "--model", casia_export["version_dir"], "--aligned"])
    assert result.exit_code == 1
    assert "150x150" in result.output and "112x96" in result.output and "contract" in result.output


def test_export_without_contract_is_refused(casia_export, tmp_path, lfw_dir):
    import shutil

    copy = tmp_path / "copy" / "1"
    shutil.copytree(casia_export["version_dir"], copy)
    (copy / "assets.extra" / "ksf_contract.json").unlink()
    image = lfw_dir / "images" / "Abel_Pacheco/Abel_Pacheco_0001.jpg"
    result = _run(["verify", image, image, "--model", copy, "--landmarks", lfw_dir / "landmarks.txt"])
    assert result.exit_code == 1 and "no preprocessing contract" in result.output


def test_export_cli_errors_are_clean(casia_export, tmp_path):
    again = _run(["export", "--model", "mobilefacenet", "--out", casia_export["root"], "--version", "1"])
    assert again.exit_code == 1 and "never overwritten" in again.output
    unknown = _run(["export", "--model", "no_such_model", "--out", tmp_path])
    assert unknown.exit_code == 1 and "Unknown model" in unknown.output
    both = _run(["export", "--model", "mobilefacenet", "--out", tmp_path, "--threshold", "0.3",
                 "--threshold-from", casia_export["crops_npy"]])
    assert both.exit_code == 2 and "exclude each other" in both.output
