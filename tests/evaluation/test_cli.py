"""`ksf eval` through click's CliRunner on 20 real LFW pairs, and its bad-input errors."""

from __future__ import annotations

import json

import numpy as np
import pytest
from click.testing import CliRunner

from keras_sphereface.data.align import align_face, load_image_rgb, read_landmarks
from keras_sphereface.evaluation import pairs as pairs_lib
from keras_sphereface.evaluation.fisher import angular_fisher_score
from keras_sphereface.evaluation.protocol import verify_embeddings
from ksf.main import cli

from .conftest import lfw_subset, tiny_model

PNG = b"\x89PNG\r\n\x1a\n"


@pytest.fixture
def tiny_file(tmp_path):
    path = tmp_path / "tiny.keras"
    tiny_model().save(path)
    return path


def _run(args):
    result = CliRunner().invoke(cli, args, catch_exceptions=False)
    return result


@pytest.mark.slow
def test_eval_pairs_writes_report_and_plots(tmp_path, lfw_dir, lfw_subset_file, tiny_file):
    out = tmp_path / "out"
    result = _run(["eval", "pairs", str(lfw_subset_file), "--model", str(tiny_file), "--data", str(lfw_dir),
                   "--out", str(out), "--cache-dir", str(tmp_path / "cache"), "--no-progress"])
    assert result.exit_code == 0, result.output
    assert "protocol sphereface" in result.output and "mean ± std" in result.output
    report = json.loads((out / "report.json").read_text())
    assert report["protocol"] == "sphereface" and report["num_pairs"] == 20
    assert [f["pairs"] for f in report["folds"]] == [10, 10]
    assert report["embeddings_computed"] == report["images"] and report["skipped_pairs"] == 0
    assert report["command"].startswith("ksf eval pairs ")
    # LFW has 20 different pairs here: TAR@FAR=1e-1 is measurable, 1e-2 and 1e-3 are not.
    notes = [p["note"] for p in report["tar_at_far"]]
    assert notes[0] == "" and "needs at least 100 different pairs, got 10" in notes[1]
    for name in ("roc.png", "scores_hist.png"):
        assert (out / name).read_bytes()[:8] == PNG
    # An independent recomputation from the images gives the same fold accuracies.
    pairs = pairs_lib.read_pairs(lfw_subset_file)
    landmarks = read_landmarks(lfw_dir / "landmarks.txt")
    paths = pairs.image_paths()
    crops = np.stack([align_face(load_image_rgb(lfw_dir / "images" / p), landmarks[p]) for p in paths])
    model = tiny_model()
    x = (crops.astype(np.float32) - 127.5) / 128.0
    feats, mirrored = model.predict(x, verbose=0), model.predict(x[:, :, ::-1], verbose=0)
    index = {p: i for i, p in enumerate(paths)}
    expected = verify_embeddings(feats, mirrored, [index[p] for p in pairs.left],
                                 [index[p] for p in pairs.right], pairs.same, pairs.folds, "sphereface")
    assert [f["accuracy"] for f in report["folds"]] == pytest.approx(expected.fold_accuracies.tolist())
    # A second run with another protocol reuses the cached embeddings.
    result = _run(["eval", "pairs", str(lfw_subset_file), "--model", str(tiny_file), "--data", str(lfw_dir),
                   "--out", str(out), "--cache-dir", str(tmp_path / "cache"), "--no-progress",
                   "--protocol", "summed"])
    report = json.loads((out / "report.json").read_text())
    assert report["protocol"] == "summed" and report["embeddings_computed"] == 0


def test_missing_image_names_line_and_path_and_skip_missing(tmp_path, lfw_dir, lfw_subset_text, tiny_file):
    lines = lfw_subset_text.splitlines()
    lines[3] = "Nobody_Here\t1\t2"  # a same pair of fold 1 (file line 4)
    pairs_file = tmp_path / "pairs.txt"
    pairs_file.write_text("\n".join(lines) + "\n")
    args = ["eval", "pairs", str(pairs_file), "--model", str(tiny_file), "--data", str(lfw_dir),
            "--out", str(tmp_path / "out"), "--no-cache", "--no-progress"]
    result = _run(args)
    assert result.exit_code == 1
    assert "pairs.txt, line 4: image file not found:" in result.output
    assert "Nobody_Here/Nobody_Here_0001.jpg" in result.output and "--skip-missing" in result.output
    assert not (tmp_path / "out").exists()
    result = _run([*args, "--skip-missing"])
    assert result.exit_code == 0, result.output
    report = json.loads((tmp_path / "out" / "report.json").read_text())
    assert report["skipped_pairs"] == 1 and report["num_pairs"] == 19
    assert report["skipped"][0]["line"] == 4


def test_malformed_line_number(tmp_path, lfw_dir, lfw_subset_text, tiny_file):
    lines = lfw_subset_text.splitlines()
    lines[7] = "Some_Name\t1\tx\t3\t4"
    pairs_file = tmp_path / "broken.txt"
    pairs_file.write_text("\n".join(lines) + "\n")
    result = _run(["eval", "pairs", str(pairs_file), "--model", str(tiny_file), "--data", str(lfw_dir),
                   "--no-cache", "--no-progress", "--out", str(tmp_path / "out")])
    assert result.exit_code == 1 and "broken.txt, line 8:" in result.output


def test_model_input_size_mismatch_fails_before_embedding(tmp_path, lfw_dir, lfw_subset_file, monkeypatch):
    from keras_sphereface import inference

    def refuse(*args, **kwargs):
        raise AssertionError("embedding started despite a size mismatch")

    monkeypatch.setattr(inference, "embed_images", refuse)
    path = tmp_path / "square.keras"
    tiny_model(input_shape=(112, 112, 3)).save(path)
    result = _run(["eval", "pairs", str(lfw_subset_file), "--model", str(path), "--data", str(lfw_dir),
                   "--no-cache", "--no-progress", "--out", str(tmp_path / "out")])
    assert result.exit_code == 1
    assert "takes 112x112" in result.output and "cropped to 112x96" in result.output
    # With the matching template the same model runs (on 112x112 arcface crops).
    monkeypatch.undo()
    result = _run(["eval", "pairs", str(lfw_subset_file), "--model", str(path), "--data", str(lfw_dir),
                   "--no-cache", "--no-progress", "--out", str(tmp_path / "out"), "--template", "arcface"])
    assert result.exit_code == 0, result.output


def test_prealigned_folder_of_wrong_size_is_refused(tmp_path, lfw_dir, tiny_file):
    import cv2

    folder = tmp_path / "crops"
    (folder / "a").mkdir(parents=True)
    cv2.imwrite(str(folder / "a" / "1.png"), np.zeros((100, 100, 3), np.uint8))
    cv2.imwrite(str(folder / "a" / "2.png"), np.zeros((100, 100, 3), np.uint8))
    pairs_file = tmp_path / "p.txt"
    pairs_file.write_text("a/1.png a/2.png 1 0\na/1.png a/2.png 0 0\na/2.png a/1.png 1 1\na/2.png a/1.png 0 1\n")
    result = _run(["eval", "pairs", str(pairs_file), "--model", str(tiny_file), "--data", str(folder),
                   "--no-cache", "--no-progress", "--out", str(tmp_path / "out")])
    assert result.exit_code == 1 and "must be aligned crops" in result.output and "100x100" in result.output


@pytest.fixture
def people_folder(tmp_path, lfw_dir):
    """Three LFW identities with 10 images each and one with 3 (below --min-images 10), linked."""
    folder = tmp_path / "people"
    for person, count in (("Ariel_Sharon", 10), ("Colin_Powell", 10), ("Serena_Williams", 10), ("Tony_Blair", 3)):
        (folder / person).mkdir(parents=True)
        for image in sorted((lfw_dir / "images" / person).iterdir())[:count]:
            (folder / person / image.name).symlink_to(image)
    return folder


def test_afs_on_a_small_labelled_folder(tmp_path, lfw_dir, tiny_file, people_folder):
    out = tmp_path / "afs"
    result = _run(["eval", "afs", "--model", str(tiny_file), "--data", str(people_folder),
                   "--landmarks", str(lfw_dir / "landmarks.txt"), "--no-cache", "--no-progress",
                   "--out", str(out)])
    assert result.exit_code == 0, result.output
    report = json.loads((out / "afs.json").read_text())
    assert report["identities"] == 3 and report["images"] == 30 and report["angular_fisher_score"] > 0
    assert "Angular Fisher Score" in result.output
    # Independent: align, embed and score directly.
    landmarks = read_landmarks(lfw_dir / "landmarks.txt")
    paths = sorted(p.relative_to(people_folder).as_posix() for p in people_folder.glob("*/*.jpg")
                   if not p.name.startswith("Tony_Blair"))
    crops = np.stack([align_face(load_image_rgb(people_folder / p), landmarks[p]) for p in paths])
    feats = tiny_model().predict((crops.astype(np.float32) - 127.5) / 128.0, verbose=0)
    expected = angular_fisher_score(feats, np.array([p.split("/")[0] for p in paths]))
    assert report["angular_fisher_score"] == pytest.approx(expected, rel=1e-5)
    # With --min-images 11 no identity is left.
    result = _run(["eval", "afs", "--model", str(tiny_file), "--data", str(people_folder),
                   "--landmarks", str(lfw_dir / "landmarks.txt"), "--no-cache", "--no-progress",
                   "--out", str(out), "--min-images", "11"])
    assert result.exit_code == 1 and "Fewer than two identities with at least 11 images" in result.output


@pytest.mark.tf_backend
def test_afs_on_tfrecords_equals_the_folder(tmp_path, lfw_dir, tiny_file, people_folder):
    from keras_sphereface.data import write_tfrecords

    records = tmp_path / "records"
    write_tfrecords(people_folder, records, num_shards=2, landmarks=lfw_dir / "landmarks.txt", workers=1)
    args = ["eval", "afs", "--model", str(tiny_file), "--no-cache", "--no-progress"]
    result = _run([*args, "--data", str(records), "--out", str(tmp_path / "a")])
    assert result.exit_code == 0, result.output
    from_records = json.loads((tmp_path / "a" / "afs.json").read_text())
    _run([*args, "--data", str(people_folder), "--landmarks", str(lfw_dir / "landmarks.txt"),
          "--out", str(tmp_path / "b")])
    from_folder = json.loads((tmp_path / "b" / "afs.json").read_text())
    assert from_records["images"] == 30 and from_records["identities"] == 3
    assert from_records["angular_fisher_score"] == pytest.approx(from_folder["angular_fisher_score"], rel=1e-6)


@pytest.mark.slow
@pytest.mark.large
def test_real_mobilefacenet_on_100_lfw_pairs(tmp_path, lfw_dir, shared_weights_dir):
    # 10 folds x (5 same + 5 different) real pairs; the pretrained model separates them all
    # (with 2 folds of 10 pairs the per-fold mean and threshold are too noisy to assert much).
    pairs_file = tmp_path / "pairs100.txt"
    pairs_file.write_text(lfw_subset(lfw_dir, 10, 5))
    out = tmp_path / "out"
    result = _run(["eval", "lfw", "--model", "mobilefacenet", "--weights", "casia", "--data", str(lfw_dir),
                   "--pairs", str(pairs_file), "--out", str(out), "--no-progress",
                   "--cache-dir", str(tmp_path / "cache")])
    assert result.exit_code == 0, result.output
    report = json.loads((out / "report.json").read_text())
    assert report["num_pairs"] == 100 and report["weights"] == "casia"
    assert report["mean_accuracy"] >= 0.97 and report["auc"] >= 0.99
    # Random weights of the same architecture are far worse on the same pairs.
    result = _run(["eval", "lfw", "--model", "mobilefacenet", "--weights", "none", "--data", str(lfw_dir),
                   "--pairs", str(pairs_file), "--out", str(out), "--no-progress", "--no-cache"])
    assert json.loads((out / "report.json").read_text())["mean_accuracy"] < 0.9
