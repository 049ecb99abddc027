"""ROC, AUC, EER and TAR@FAR on known cases and against direct pairwise counting."""

from __future__ import annotations

import numpy as np
import pytest

from keras_sphereface.evaluation.roc import auc, eer, roc_curve, roc_summary, tar_at_far


def test_perfect_separation():
    scores = np.array([0.9, 0.8, 0.7, 0.1, 0.2, 0.3])
    same = np.array([1, 1, 1, 0, 0, 0], bool)
    curve = roc_curve(scores, same)
    assert auc(curve) == 1.0
    assert eer(curve) == 0.0


def test_small_known_case():
    # Positives 0.9, 0.6, 0.3; negatives 0.7, 0.2, 0.1.
    # Pairs (p, n) with p > n: 0.9 beats all 3, 0.6 beats 2, 0.3 beats 2 -> 7 of 9 -> AUC 7/9.
    scores = np.array([0.9, 0.6, 0.3, 0.7, 0.2, 0.1])
    same = np.array([1, 1, 1, 0, 0, 0], bool)
    curve = roc_curve(scores, same)
    assert auc(curve) == pytest.approx(7 / 9)
    # Points (FAR, TAR) as the threshold drops: (0,0) (0,1/3) (1/3,1/3) (1/3,2/3) (1/3,1) (2/3,1) (1,1).
    np.testing.assert_allclose(curve.far, [0, 0, 1 / 3, 1 / 3, 1 / 3, 2 / 3, 1])
    np.testing.assert_allclose(curve.tar, [0, 1 / 3, 1 / 3, 2 / 3, 1, 1, 1])
    # FAR = 1 - TAR on the segment from (1/3, 2/3) to (1/3, 1): the EER is 1/3.
    assert eer(curve) == pytest.approx(1 / 3)


def test_eer_interpolates_between_points():
    # One positive at 0.5, one negative at 0.5: the curve jumps from (0, 0) to (1, 1); the line
    # FAR = 1 - TAR crosses it at (0.5, 0.5).
    curve = roc_curve(np.array([0.5, 0.5]), np.array([True, False]))
    assert auc(curve) == pytest.approx(0.5)
    assert eer(curve) == pytest.approx(0.5)


def test_auc_equals_pairwise_probability_with_ties():
    rng = np.random.default_rng(0)
    scores = np.round(rng.normal(size=400), 1)  # many ties
    same = rng.random(400) < 0.4
    pos, neg = scores[same], scores[~same]
    direct = (np.sum(pos[:, None] > neg[None, :]) + 0.5 * np.sum(pos[:, None] == neg[None, :])) / (
        pos.size * neg.size)
    assert auc(roc_curve(scores, same)) == pytest.approx(direct, abs=1e-12)


def test_tar_at_far_counts_false_accepts():
    negatives = np.arange(100) / 100.0  # 0.00 .. 0.99
    positives = np.array([0.995, 0.985, 0.975, 0.5, 0.05])
    scores = np.concatenate([positives, negatives])
    same = np.concatenate([np.ones(5, bool), np.zeros(100, bool)])
    point = tar_at_far(scores, same, 0.01)
    # One false accept allowed: threshold is the 2nd largest negative (0.98); only 0.99 is above it.
    assert point.threshold == pytest.approx(0.98)
    assert point.achieved_far == pytest.approx(0.01)
    assert point.tar == pytest.approx(2 / 5)
    point = tar_at_far(scores, same, 0.1)
    assert point.threshold == pytest.approx(0.89) and point.tar == pytest.approx(3 / 5)


def test_tar_at_far_says_when_there_are_too_few_pairs():
    scores = np.concatenate([np.linspace(0.5, 1, 50), np.linspace(0, 0.6, 300)])
    same = np.arange(350) < 50
    summary = roc_summary(scores, same, fars=(1e-1, 1e-2, 1e-3))
    assert [p.tar is None for p in summary.tar_at_far] == [False, False, True]
    assert "needs at least 1000 different pairs, got 300" in summary.tar_at_far[2].note
    assert summary.num_same == 50 and summary.num_different == 300


def test_bad_input():
    with pytest.raises(ValueError, match="both same and different"):
        roc_curve(np.array([0.1, 0.2]), np.array([True, True]))
    with pytest.raises(ValueError, match="Received: far=1.5"):
        tar_at_far(np.array([0.1, 0.2]), np.array([True, False]), 1.5)
