"""insightface's `.bin` protocol against a plain re-computation (loops over folds and thresholds)."""

from __future__ import annotations

import numpy as np
import pytest

from keras_sphereface.evaluation.insightface_protocol import (
    THRESHOLDS,
    VAL_THRESHOLDS,
    contiguous_folds,
    verify_insightface,
)


def test_contiguous_folds_are_kfold_without_shuffling():
    folds = contiguous_folds(25, 10)
    assert np.bincount(folds).tolist() == [3, 3, 3, 3, 3, 2, 2, 2, 2, 2]
    assert np.all(np.diff(folds) >= 0)
    with pytest.raises(ValueError, match="one pair per fold"):
        contiguous_folds(5, 10)


def _reference(embeddings, flipped, same, far_target):
    """The protocol as its description says, one fold and one threshold at a time."""
    features = embeddings + flipped
    features = features / np.linalg.norm(features, axis=1, keepdims=True)
    distances = np.array([np.sum((features[2 * i] - features[2 * i + 1]) ** 2) for i in range(same.size)])
    bounds = np.cumsum([0] + [len(c) for c in np.array_split(np.arange(same.size), 10)])
    accuracies, vals = [], []
    for fold in range(10):
        test = np.zeros(same.size, bool)
        test[bounds[fold]:bounds[fold + 1]] = True

        def rates(t, mask):
            said = distances[mask] < t
            truth = same[mask]
            return (np.mean(said == truth), np.sum(said & truth) / max(truth.sum(), 1),
                    np.sum(said & ~truth) / max((~truth).sum(), 1))

        train = [rates(t, ~test)[0] for t in THRESHOLDS]
        accuracies.append(rates(THRESHOLDS[int(np.argmax(train))], test)[0])
        far_train = np.array([rates(t, ~test)[2] for t in VAL_THRESHOLDS])
        threshold = 0.0
        if far_train.max() >= far_target:
            below = np.flatnonzero(far_train <= far_target)[-1]
            above = np.flatnonzero(far_train >= far_target)[0]
            if far_train[above] == far_train[below]:
                threshold = VAL_THRESHOLDS[above]
            else:  # first thresholds of the two distinct FARs around the target, linearly
                lo = VAL_THRESHOLDS[np.flatnonzero(far_train == far_train[below])[0]]
                hi = VAL_THRESHOLDS[above]
                threshold = lo + (hi - lo) * (far_target - far_train[below]) / (far_train[above] - far_train[below])
        vals.append(rates(threshold, test)[1])
    return np.array(accuracies), np.array(vals)


def test_matches_the_reference_on_noisy_embeddings():
    rng = np.random.default_rng(3)
    num_pairs, dim = 203, 8
    same = rng.random(num_pairs) < 0.5
    centres = rng.normal(size=(num_pairs, dim))
    embeddings = np.empty((2 * num_pairs, dim))
    embeddings[0::2] = centres + 0.8 * rng.normal(size=centres.shape)
    partner = np.where(same[:, None], centres, rng.normal(size=centres.shape))
    embeddings[1::2] = partner + 0.8 * rng.normal(size=centres.shape)
    flipped = embeddings + 0.1 * rng.normal(size=embeddings.shape)
    result = verify_insightface(embeddings, flipped, same, far_target=0.05)
    accuracies, vals = _reference(embeddings, flipped, same, 0.05)
    np.testing.assert_allclose(result.fold_accuracies, accuracies)
    np.testing.assert_allclose(result.val, vals)
    figures = result.to_dict()
    assert figures["mean_accuracy"] == pytest.approx(accuracies.mean())
    assert figures["std_accuracy"] == pytest.approx(accuracies.std())
    assert 0.6 < figures["mean_accuracy"] < 1.0


def test_separable_pairs_are_all_right_and_shapes_are_checked():
    same = np.array([True, False] * 10)
    base = np.eye(4)[np.arange(40) % 4]
    embeddings = base.copy()
    embeddings[1::2] = np.where(same[:, None], base[0::2], np.roll(base[0::2], 1, axis=1))
    result = verify_insightface(embeddings, embeddings, same)
    assert result.fold_accuracies.tolist() == [1.0] * 10
    with pytest.raises(ValueError, match=r"\(2 \* num_pairs, dim\) = \(40, dim\)"):
        verify_insightface(embeddings[:-1], embeddings[:-1], same)
