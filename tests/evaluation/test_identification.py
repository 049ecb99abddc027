"""Identification protocols: CMC and DIR@FAR against a hand computation, the LFW split, `ksf eval identify`."""

from __future__ import annotations

import json

import numpy as np
import pytest
from click.testing import CliRunner

from keras_sphereface.evaluation import (
    cmc_curve,
    identify_embeddings,
    lfw_identification_split,
)
from keras_sphereface.evaluation.identification import identity_scores, mate_ranks
from keras_sphereface.evaluation.sources import labelled_images
from ksf.main import cli

from .conftest import tiny_model

PNG = b"\x89PNG\r\n\x1a\n"


def _angles(degrees):
    """Unit vectors in the plane at the given angles (cosine of two = cos of their angle difference)."""
    radians = np.deg2rad(np.asarray(degrees, dtype=np.float64))
    return np.stack([np.cos(radians), np.sin(radians)], axis=1)


def test_cmc_and_dir_against_a_hand_computation():
    # gallery identities A, B, C at 0, 90, 180 degrees; cos(probe, identity) = cos(angle difference)
    gallery, gallery_labels = _angles([0, 90, 180]), ["A", "B", "C"]
    # p1 (A) at 10 degrees: A first (cos 10 = 0.985).  p2 (A) at 80: B (0.985) beats A (0.174): rank 2.
    # p3 (B) at 100: B first (0.985).  p4 (C) at 260: C cos 80 = 0.174 beats A cos 100 and B cos 170: rank 1.
    # p5 (C) at 300: A cos 60 = 0.5 beats C cos 120 = -0.5: rank 2.
    probes, labels = _angles([10, 80, 100, 260, 300]), ["A", "A", "B", "C", "C"]
    # impostors' best scores: at 45 -> 0.707 (A, B); at 200 -> 0.940 (C); at 135 -> 0.707; at 30 -> 0.866
    impostors = _angles([45, 200, 135, 30])
    result = identify_embeddings(gallery, gallery_labels, probes, labels, impostors, ranks=(1, 2), fars=(0.25, 0.5))
    assert result.mate_ranks.tolist() == [1, 2, 1, 1, 2]
    np.testing.assert_allclose(result.cmc, [3 / 5, 1.0, 1.0])
    np.testing.assert_allclose(result.impostor_scores, [np.cos(np.pi / 4), np.cos(np.deg2rad(20)),
                                                        np.cos(np.pi / 4), np.cos(np.pi / 6)])
    # FAR 0.25 of 4 impostors: at most 1 accepted -> threshold = 2nd highest impostor score = cos 30 = 0.866;
    # rank-1 probes above it: p1 (0.985), p3 (0.985); p4 (0.174) is not -> DIR = 2/5.
    low, high = result.dir_at_far
    assert low.threshold == pytest.approx(np.cos(np.pi / 6)) and low.tar == pytest.approx(2 / 5)
    assert low.achieved_far == pytest.approx(0.25)
    # FAR 0.5: at most 2 accepted -> threshold = 3rd highest = 0.707; still p1 and p3.
    assert high.threshold == pytest.approx(np.cos(np.pi / 4)) and high.tar == pytest.approx(2 / 5)
    assert result.rank_rate(1) == pytest.approx(0.6) and result.rank_rate(10) == 1.0


def test_ties_count_against_the_probe_and_identities_take_their_best_image():
    scores, names = identity_scores(_angles([0]), _angles([90, 270, 0, 60]), ["B", "B", "A", "C"])
    assert names == ["A", "B", "C"]
    np.testing.assert_allclose(scores, [[1.0, np.cos(np.pi / 2), 0.5]], atol=1e-7)
    tied = np.array([[0.5, 0.5, 0.1]])
    assert mate_ranks(tied, ["A", "B", "C"], ["A"]).tolist() == [2]
    assert cmc_curve(np.array([1, 2, 2, 5]), 3).tolist() == [0.25, 0.75, 0.75]
    with pytest.raises(ValueError, match="identity in the gallery"):
        mate_ranks(tied, ["A", "B", "C"], ["Z"])


def test_lfw_split_is_deterministic_and_uses_lfws_own_people(lfw_dir):
    paths, labels = labelled_images(lfw_dir / "images")
    split = lfw_identification_split(paths[::-1], labels[::-1])  # the input order does not matter
    assert split == lfw_identification_split(paths, labels)
    counts = split.counts()
    # this copy of LFW lacks one single-image person (Betsy_Coffin): 1,680 people with 2+ images, 4,068 with one
    assert counts == {"gallery_images": 1680, "gallery_identities": 1680, "genuine_probes": 9164 - 1680,
                      "impostor_probes": 4068, "impostor_identities": 4068}
    assert all(path.endswith("_0001.jpg") for path in split.gallery)
    assert set(split.gallery_labels).isdisjoint(split.impostor_labels)
    with pytest.raises(ValueError, match="people with one"):
        lfw_identification_split(["a/1.jpg", "a/2.jpg"], ["a", "a"])


@pytest.fixture
def small_lfw(tmp_path, lfw_dir):
    """An LFW-like folder of links: 3 people with 4 images, 3 with one, and LFW's landmark file."""
    root = tmp_path / "lfw-small"
    (root / "images").mkdir(parents=True)
    for name in ("Aaron_Peirsol", "Abdoulaye_Wade", "Abel_Pacheco", "AJ_Cook", "AJ_Lamas", "Aaron_Eckhart"):
        (root / "images" / name).symlink_to(lfw_dir / "images" / name, target_is_directory=True)
    (root / "landmarks.txt").symlink_to(lfw_dir / "landmarks.txt")
    return root


@pytest.mark.slow
def test_eval_identify_writes_report_and_cmc_and_reuses_the_cache(tmp_path, small_lfw):
    model = tmp_path / "tiny.keras"
    tiny_model().save(model)
    out = tmp_path / "out"
    args = ["eval", "identify", "--model", str(model), "--data", str(small_lfw), "--out", str(out),
            "--cache-dir", str(tmp_path / "cache"), "--no-progress"]
    result = CliRunner().invoke(cli, args, catch_exceptions=False)
    assert result.exit_code == 0, result.output
    assert "closed set: rank-1" in result.output and "DIR@FAR=0.01" in result.output
    report = json.loads((out / "report.json").read_text())
    assert (report["gallery_identities"], report["genuine_probes"], report["impostor_probes"]) == (3, 9, 3)
    assert report["embeddings_computed"] == 15 and report["command"].startswith("ksf eval identify ")
    assert set(report["cmc_at_rank"]) == {"1", "5", "10"} and report["cmc_curve"][-1] == 1.0
    assert "needs at least 100 impostor probes" in report["dir_at_far"][0]["note"]  # 3 impostors cannot measure FAR 1%
    assert (out / "cmc.png").read_bytes()[:8] == PNG
    CliRunner().invoke(cli, args, catch_exceptions=False)
    assert json.loads((out / "report.json").read_text())["embeddings_computed"] == 0


@pytest.mark.slow
@pytest.mark.large
def test_real_mobilefacenet_identifies_lfw_people(tmp_path, lfw_dir, shared_weights_dir):
    # the first 40 LFW people with 2+ images (gallery + probes) and the first 120 with one (impostors)
    counts = {}
    for line in (lfw_dir / "lfw-names.txt").read_text().splitlines():
        name, number = line.split()
        counts[name] = int(number)
    present = [n for n in counts if (lfw_dir / "images" / n).is_dir()]
    chosen = [n for n in present if counts[n] >= 2][:40] + [n for n in present if counts[n] == 1][:120]
    root = tmp_path / "lfw-subset"
    (root / "images").mkdir(parents=True)
    for name in chosen:
        (root / "images" / name).symlink_to(lfw_dir / "images" / name, target_is_directory=True)
    (root / "landmarks.txt").symlink_to(lfw_dir / "landmarks.txt")
    out = tmp_path / "out"
    result = CliRunner().invoke(cli, ["eval", "identify", "--model", "mobilefacenet", "--weights", "casia", "--data",
                                      str(root), "--out", str(out), "--no-progress", "--no-cache"],
                                catch_exceptions=False)
    assert result.exit_code == 0, result.output
    report = json.loads((out / "report.json").read_text())
    assert report["gallery_identities"] == 40 and report["impostor_probes"] == 120
    assert report["cmc_at_rank"]["1"] >= 0.9 and report["cmc_at_rank"]["10"] >= 0.97
    assert report["dir_at_far"][0]["dir"] >= 0.6  # FAR 1% of 120 impostors: 1 accepted
