"""`ksf make-bin` and `ksf eval bin` on 20 real LFW pairs with a tiny model: the crops, both protocols, the files."""

from __future__ import annotations

import json

import numpy as np
import pytest
from click.testing import CliRunner

from keras_sphereface.data.align import align_face, load_image_rgb, read_landmarks
from keras_sphereface.data.bin_sets import read_bin
from keras_sphereface.data.images import decode_image_rgb
from keras_sphereface.evaluation import pairs as pairs_lib
from keras_sphereface.evaluation.bin_eval import BinSource
from keras_sphereface.evaluation.insightface_protocol import contiguous_folds, verify_insightface
from keras_sphereface.evaluation.protocol import verify_embeddings
from ksf.main import cli

from .conftest import tiny_model

PNG = b"\x89PNG\r\n\x1a\n"


def _run(args):
    return CliRunner().invoke(cli, [str(a) for a in args], catch_exceptions=False)


@pytest.fixture
def lfw_bin(tmp_path, lfw_dir, lfw_subset_file):
    """A 20-pair `.bin` of PNG (lossless) ArcFace crops, made by `ksf make-bin`."""
    out = tmp_path / "lfw20.bin"
    result = _run(["make-bin", lfw_subset_file, out, "--data", lfw_dir, "--image-format", "png"])
    assert result.exit_code == 0, result.output
    assert "20 pairs (10 same), 40 112x112 arcface crops; skipped 0 pairs" in result.output
    return out


def test_make_bin_writes_the_pairs_aligned_to_the_arcface_template(lfw_bin, lfw_dir, lfw_subset_file):
    found = read_bin(lfw_bin)
    pairs = pairs_lib.read_pairs(lfw_subset_file)
    assert found.same.tolist() == pairs.same.tolist()
    landmarks = read_landmarks(lfw_dir / "landmarks.txt")
    for index, path in ((0, pairs.left[0]), (1, pairs.right[0]), (39, pairs.right[-1])):
        expected = align_face(load_image_rgb(lfw_dir / "images" / path), landmarks[path], "arcface", (112, 112))
        np.testing.assert_array_equal(decode_image_rgb(found.images[index]), expected)


def test_make_bin_skips_missing_images_only_when_asked(tmp_path, lfw_dir, lfw_subset_text):
    lines = lfw_subset_text.splitlines()
    lines[1] = "Nobody_Here\t1\t2"
    pairs_file = tmp_path / "missing.txt"
    pairs_file.write_text("\n".join(lines) + "\n")
    result = CliRunner().invoke(cli, ["make-bin", str(pairs_file), str(tmp_path / "a.bin"), "--data", str(lfw_dir)])
    assert result.exit_code == 1 and "missing.txt, line 2: image file not found" in result.output
    assert not (tmp_path / "a.bin").exists()
    result = _run(["make-bin", pairs_file, tmp_path / "a.bin", "--data", lfw_dir, "--skip-missing"])
    assert result.exit_code == 0, result.output
    assert "skipped line 2" in result.output and "19 pairs (9 same)" in result.output
    assert read_bin(tmp_path / "a.bin").num_pairs == 19


def test_eval_bin_reports_both_protocols_on_the_centre_crop(tmp_path, lfw_bin):
    model_file = tmp_path / "tiny.keras"
    tiny_model().save(model_file)  # 112x96 input: the centre 96 columns of each crop
    out = tmp_path / "out"
    result = _run(["eval", "bin", lfw_bin, "--model", model_file, "--out", out, "--no-cache", "--no-progress"])
    assert result.exit_code == 0, result.output
    assert "lfw20: protocol sphereface" in result.output and ".bin verification sets" in result.output
    report = json.loads((out / "lfw20" / "report.json").read_text())
    assert report["num_pairs"] == 20 and report["images"] == 40 and report["protocol"] == "sphereface"
    assert report["command"].startswith("ksf eval bin ")
    for name in ("roc.png", "scores_hist.png"):
        assert (out / "lfw20" / name).read_bytes()[:8] == PNG
    # Recomputed from the file's crops, columns 8..104, with the same model.
    found = read_bin(lfw_bin)
    crops = np.stack([decode_image_rgb(image)[:, 8:104] for image in found.images])
    x = (crops.astype(np.float32) - 127.5) / 128.0
    model = tiny_model()
    feats, mirrored = model.predict(x, verbose=0), model.predict(x[:, :, ::-1], verbose=0)
    pairs = np.arange(20)
    ours = verify_embeddings(feats, mirrored, 2 * pairs, 2 * pairs + 1, found.same, contiguous_folds(20), "sphereface")
    assert report["mean_accuracy"] == pytest.approx(ours.mean_accuracy)
    theirs = verify_insightface(feats, mirrored, found.same)
    assert report["insightface"]["mean_accuracy"] == pytest.approx(float(np.mean(theirs.fold_accuracies)))
    assert report["insightface"]["far_target"] == 1e-3 and 0.0 <= report["insightface"]["val"] <= 1.0


def test_the_crop_a_model_gets_and_sizes_refused(tmp_path, lfw_bin):
    found = read_bin(lfw_bin)
    image = decode_image_rgb(found.images[0])
    source = BinSource(lfw_bin, size=(112, 112), images=found.images)
    np.testing.assert_array_equal(source.crop("0", found.images[0]), image)
    source = BinSource(lfw_bin, size=(112, 96), images=found.images)
    np.testing.assert_array_equal(source.crop("0", found.images[0]), image[:, 8:104])
    assert source.check_available("40") == f"no image 40 in {lfw_bin}"
    model_file = tmp_path / "square.keras"
    tiny_model((96, 96, 3)).save(model_file)
    result = CliRunner().invoke(cli, ["eval", "bin", str(lfw_bin), "--model", str(model_file), "--no-cache"])
    assert result.exit_code == 1
    assert "takes 96x96 inputs; a .bin set's 112x112 ArcFace-aligned crops serve 112x112" in result.output
