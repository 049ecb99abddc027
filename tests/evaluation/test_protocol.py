"""The verification protocol against a hand-computed case and an independent loop implementation."""

from __future__ import annotations

import numpy as np
import pytest

from keras_sphereface.evaluation.protocol import (
    PROTOCOLS,
    best_threshold,
    combine_flip,
    correct_counts,
    get_protocol,
    verify_embeddings,
    verify_features,
    verify_scores,
)

# Three folds of fixed scores. Worked out by hand (see test_hand_computed_folds):
#   fold 0 held out -> validation folds 1, 2. Sorted validation scores
#     -0.1 d, 0.0 d, 0.2 d, 0.3 s, 0.35 d, 0.36 s, 0.4 s, 0.7 s, 0.8 s   (s: same, d: different)
#     8 of 9 correct for t in (0.2, 0.3) and for t in (0.35, 0.36); the grid points there are
#     0.2001..0.2999 (999 points, mean 0.25) and 0.3501..0.3599 (99 points, mean 0.355), so the
#     threshold is (999 * 0.25 + 99 * 0.355) / 1098. Held-out fold 0: 0.9 s, 0.5 s, 0.1 d right,
#     0.6 d wrong -> 3/4.
#   fold 1 held out -> folds 0, 2: 0.0 d, 0.1 d, 0.35 d, 0.4 s, 0.5 s, 0.6 d, 0.7 s, 0.9 s; the best
#     (7 of 8) is t in (0.35, 0.4) only -> 0.375. Held out: 0.8 s right, 0.3 s and 0.36 s wrong,
#     0.2 d and -0.1 d right -> 3/5.
#   fold 2 held out -> folds 0, 1: -0.1 d, 0.1 d, 0.2 d, 0.3 s, 0.36 s, 0.5 s, 0.6 d, 0.8 s, 0.9 s;
#     best (8 of 9) for t in (0.2, 0.3) -> 0.25. Held out: 0.7 s, 0.4 s right, 0.35 d wrong,
#     0.0 d right -> 3/4.
HAND_SCORES = [0.9, 0.5, 0.1, 0.6, 0.8, 0.3, 0.36, 0.2, -0.1, 0.7, 0.4, 0.35, 0.0]
HAND_SAME = [1, 1, 0, 0, 1, 1, 1, 0, 0, 1, 1, 0, 0]
HAND_FOLDS = [0, 0, 0, 0, 1, 1, 1, 1, 1, 2, 2, 2, 2]


def test_hand_computed_folds():
    result = verify_scores(np.array(HAND_SCORES), np.array(HAND_SAME, bool), np.array(HAND_FOLDS))
    expected_thresholds = [(999 * 0.25 + 99 * 0.355) / 1098, 0.375, 0.25]
    np.testing.assert_allclose(result.thresholds, expected_thresholds, rtol=0, atol=1e-9)
    np.testing.assert_allclose(result.fold_accuracies, [0.75, 0.6, 0.75], rtol=0, atol=1e-12)
    assert result.mean_accuracy == pytest.approx(0.7)
    assert result.std_accuracy == pytest.approx(np.sqrt(((0.05**2) * 2 + 0.1**2) / 3))
    assert result.fold_sizes.tolist() == [4, 5, 4]


def test_score_equal_to_threshold_is_wrong_for_both_classes():
    scores = np.array([0.5, 0.5])
    same = np.array([True, False])
    assert correct_counts(scores, same, np.array([0.5, 0.4, 0.6])).tolist() == [0, 1, 1]


def _reference_threshold(scores, same, steps):
    # A literal transcription of the release's getThreshold / getAccuracy loops.
    thresholds = np.arange(-steps, steps + 1) / steps
    accuracies = np.array(
        [(np.sum(scores[same] > t) + np.sum(scores[~same] < t)) / scores.size for t in thresholds]
    )
    return np.mean(thresholds[accuracies == accuracies.max()])


def _reference_sphereface(left, right, same, folds, steps):
    accs, thrs = [], []
    for fold in range(10):
        val, test = folds != fold, folds == fold
        mu = np.mean(np.concatenate([left[val], right[val]]), axis=0)
        fl, fr = left - mu, right - mu
        fl = fl / np.sqrt(np.sum(fl**2, axis=1, keepdims=True))
        fr = fr / np.sqrt(np.sum(fr**2, axis=1, keepdims=True))
        scores = np.sum(fl * fr, axis=1)
        threshold = _reference_threshold(scores[val], same[val], steps)
        accs.append((np.sum(scores[test & same] > threshold) + np.sum(scores[test & ~same] < threshold))
                    / test.sum())
        thrs.append(threshold)
    return np.array(accs), np.array(thrs)


def test_sphereface_protocol_matches_loop_reference():
    rng = np.random.default_rng(0)
    num_pairs, dim = 200, 8
    same = np.tile(np.repeat([True, False], 10), 10)
    folds = np.repeat(np.arange(10), 20)
    identity = rng.normal(size=(num_pairs, dim)) + 1.5  # an offset that mean subtraction removes
    left = identity + 0.8 * rng.normal(size=(num_pairs, dim))
    right = np.where(same[:, None], identity, rng.normal(size=(num_pairs, dim)) + 1.5)
    right = right + 0.8 * rng.normal(size=(num_pairs, dim))
    result = verify_features(left, right, same, folds, subtract_mean=True, steps=500)
    accs, thrs = _reference_sphereface(left, right, same, folds, steps=500)
    np.testing.assert_allclose(result.fold_accuracies, accs, atol=1e-12)
    np.testing.assert_allclose(result.thresholds, thrs, atol=1e-12)
    # Mean subtraction matters here: without it the scores (and thresholds) differ.
    plain = verify_features(left, right, same, folds, subtract_mean=False, steps=500)
    assert not np.allclose(plain.thresholds, result.thresholds)


def test_random_embeddings_give_chance_accuracy():
    rng = np.random.default_rng(1)
    embeddings = rng.normal(size=(12000, 64))
    flipped = rng.normal(size=(12000, 64))
    same = np.tile(np.repeat([True, False], 300), 10)
    folds = np.repeat(np.arange(10), 600)
    left, right = np.arange(0, 12000, 2), np.arange(1, 12000, 2)
    for name in PROTOCOLS:
        result = verify_embeddings(embeddings, flipped, left, right, same, folds, name)
        assert 0.46 < result.mean_accuracy < 0.54, (name, result.mean_accuracy)
        assert result.protocol == name


def test_separable_embeddings_give_perfect_accuracy_with_threshold_between_classes():
    rng = np.random.default_rng(2)
    people = rng.normal(size=(1200, 32))
    same = np.tile(np.repeat([True, False], 60), 10)
    folds = np.repeat(np.arange(10), 120)
    left = people
    right = np.where(same[:, None], people + 0.05 * rng.normal(size=people.shape), -people)
    result = verify_features(left, right, same, folds, subtract_mean=False)
    assert result.mean_accuracy == 1.0
    assert np.all(result.thresholds > result.scores[~same].max())
    assert np.all(result.thresholds < result.scores[same].min())


def test_combine_flip_modes():
    a = np.array([[1.0, 2.0]])
    b = np.array([[3.0, 5.0]])
    assert combine_flip(a, b, "concat").tolist() == [[1, 2, 3, 5]]
    assert combine_flip(a, b, "sum").tolist() == [[4, 7]]
    assert combine_flip(a, None, "none").tolist() == [[1, 2]]
    with pytest.raises(ValueError, match="mirrored"):
        combine_flip(a, None, "concat")
    with pytest.raises(ValueError, match="Received: flip="):
        combine_flip(a, b, "mean")


def test_protocol_definitions_and_errors():
    assert get_protocol("sphereface").subtract_mean and get_protocol("sphereface").flip == "concat"
    assert get_protocol("summed").flip == "sum" and not get_protocol("summed").subtract_mean
    assert not get_protocol("plain").needs_flip
    with pytest.raises(ValueError, match="Received: protocol='lfw'"):
        get_protocol("lfw")
    with pytest.raises(ValueError, match="at least 2 folds"):
        verify_scores(np.zeros(4), np.array([1, 0, 1, 0], bool), np.zeros(4, int))


def test_best_threshold_is_the_mean_of_the_maximizing_grid_points():
    # Both pairs are right exactly for t in (0.1, 0.2): grid points 0.1001..0.1999, mean 0.15.
    assert best_threshold(np.array([0.2, 0.1]), np.array([True, False])) == pytest.approx(0.15)
    # A different pair above a same pair: t < 0.1 gets the same pair right, t > 0.2 the different
    # one, t in [0.1, 0.2] neither (ties are wrong). Maximizers: -1..0.0999 (11000 grid points) and
    # 0.2001..1 (8000 points); the threshold is the mean of all 19000 of them (about -0.0079).
    expected = (11000 * (-1 + 0.0999) / 2 + 8000 * (0.2001 + 1) / 2) / 19000
    assert best_threshold(np.array([0.1, 0.2]), np.array([True, False])) == pytest.approx(expected)
