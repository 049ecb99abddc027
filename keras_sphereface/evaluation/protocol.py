"""K-fold face verification exactly as the SphereFace release evaluates LFW.

For each fold `i` (the held-out fold), with the other folds as the validation set:

1. (`sphereface` protocol) subtract from every pair feature the mean `mu_i` of the left and right
   features of the validation pairs, then L2-normalize;
2. score every pair by the cosine of its two features;
3. pick the threshold on the validation pairs: the accuracy of each threshold on the grid
   `-1, -1 + 1e-4, ..., 1` (a same pair is right when `score > t`, a different pair when
   `score < t`; a score equal to `t` is wrong either way), and the threshold is the mean of all
   thresholds that reach the best accuracy;
4. apply it to the held-out fold.

The reported figure is the mean (and the population standard deviation) of the fold accuracies.

Three protocols differ only in how a pair feature is formed and whether the mean is subtracted:

| protocol | feature of an image | mean subtraction |
|---|---|---|
| `sphereface` | `[f(x), f(flip(x))]` concatenated | yes, per fold |
| `summed` | `f(x) + f(flip(x))` | no |
| `plain` | `f(x)` | no |
"""

from __future__ import annotations

import dataclasses

import numpy as np

from keras_sphereface.inference.contract import FLIP_FUSIONS
from keras_sphereface.utils.vectors import l2_normalize_rows

#: How an embedding is combined with its mirror's (`combine_flip`): the fusions an export can carry.
FLIP_MODES = FLIP_FUSIONS


@dataclasses.dataclass(frozen=True)
class Protocol:
    """How pair features are formed.

    Attributes:
        name: str. The protocol's name, written into every report.
        flip: str. `"concat"`, `"sum"` or `"none"`: how the features of an image and of its
            horizontal mirror are combined.
        subtract_mean: bool. Whether each fold subtracts the validation folds' mean feature.
        description: str. One line for reports.
    """

    name: str
    flip: str
    subtract_mean: bool
    description: str

    @property
    def needs_flip(self) -> bool:
        """bool. Whether the mirrored images must be embedded."""
        return self.flip != "none"


PROTOCOLS: dict[str, Protocol] = {
    "sphereface": Protocol(
        "sphereface",
        "concat",
        True,
        "SphereFace release: [f(x), f(flip x)] concatenated, minus the mean of the 9 other folds, "
        "L2-normalized, cosine; threshold = mean of the maximizers on the -1..1 grid (step 1e-4)",
    ),
    "summed": Protocol(
        "summed",
        "sum",
        False,
        "f(x) + f(flip x), L2-normalized, cosine, no mean subtraction; threshold as in sphereface",
    ),
    "plain": Protocol(
        "plain",
        "none",
        False,
        "f(x) only, L2-normalized, cosine, no mean subtraction; threshold as in sphereface",
    ),
}


def get_protocol(name: str | Protocol) -> Protocol:
    """Returns the `Protocol` called `name` (`"sphereface"`, `"summed"` or `"plain"`)."""
    if isinstance(name, Protocol):
        return name
    if name not in PROTOCOLS:
        raise ValueError(
            f"Unknown protocol; expected one of {sorted(PROTOCOLS)}. Received: protocol={name!r}"
        )
    return PROTOCOLS[name]


def combine_flip(features: np.ndarray, flipped: np.ndarray | None, flip: str) -> np.ndarray:
    """Forms image features from the embeddings of the images and of their mirrors.

    Args:
        features: `np.ndarray`, shape `(num_images, dim)`. Embeddings of the images.
        flipped: `np.ndarray` or None, shape `(num_images, dim)`. Embeddings of the mirrored
            images; may be None when `flip="none"`.
        flip: str. `"concat"` (shape `(num_images, 2 * dim)`), `"sum"` or `"none"`.

    Returns:
        `np.ndarray` of float64.
    """
    features = np.asarray(features, dtype=np.float64)
    if flip == "none":
        return features
    if flipped is None:
        raise ValueError(
            f"flip={flip!r} needs the embeddings of the mirrored images. Received: flipped=None"
        )
    flipped = np.asarray(flipped, dtype=np.float64)
    if flipped.shape != features.shape:
        raise ValueError(
            f"features and flipped must have one shape. "
            f"Received: features.shape={features.shape}, flipped.shape={flipped.shape}"
        )
    if flip == "concat":
        return np.concatenate([features, flipped], axis=1)
    if flip == "sum":
        return features + flipped
    raise ValueError(f"flip must be one of {list(FLIP_MODES)}. Received: flip={flip!r}")


def threshold_grid(steps: int = 10000) -> np.ndarray:
    """Returns the thresholds `k / steps` for `k = -steps..steps` (shape `(2 * steps + 1,)`)."""
    return np.arange(-steps, steps + 1, dtype=np.float64) / steps


def correct_counts(scores: np.ndarray, same: np.ndarray, thresholds: np.ndarray) -> np.ndarray:
    """Counts the pairs each threshold classifies correctly.

    A same pair is correct when `score > threshold`, a different pair when `score < threshold`.

    Args:
        scores: `np.ndarray`, shape `(num_pairs,)`. Similarity scores.
        same: `np.ndarray` of bool, shape `(num_pairs,)`. Pair labels.
        thresholds: `np.ndarray`, shape `(num_thresholds,)`.

    Returns:
        `np.ndarray` of int, shape `(num_thresholds,)`.
    """
    scores = np.asarray(scores, dtype=np.float64)
    same = np.asarray(same, dtype=bool)
    positives = np.sort(scores[same])
    negatives = np.sort(scores[~same])
    thresholds = np.asarray(thresholds, dtype=np.float64)
    true_accepts = positives.size - np.searchsorted(positives, thresholds, side="right")
    true_rejects = np.searchsorted(negatives, thresholds, side="left")
    return true_accepts + true_rejects


def accuracy(scores: np.ndarray, same: np.ndarray, threshold: float) -> float:
    """Returns the fraction of pairs classified correctly at `threshold` (see `correct_counts`)."""
    scores = np.asarray(scores)
    count = correct_counts(scores, same, np.asarray([threshold]))[0]
    return float(count) / scores.size


def best_threshold(scores: np.ndarray, same: np.ndarray, steps: int = 10000) -> float:
    """Returns the mean of all grid thresholds that maximize the accuracy on `scores`.

    Args:
        scores: `np.ndarray`, shape `(num_pairs,)`. Similarity scores.
        same: `np.ndarray` of bool, shape `(num_pairs,)`. Pair labels.
        steps: int. The grid is `-1..1` in steps of `1 / steps`.
    """
    grid = threshold_grid(steps)
    counts = correct_counts(scores, same, grid)
    return float(np.mean(grid[counts == counts.max()]))


@dataclasses.dataclass(frozen=True)
class VerificationResult:
    """Outcome of k-fold verification.

    Attributes:
        protocol: str. Protocol name.
        fold_accuracies: `np.ndarray`, shape `(num_folds,)`. Accuracy on each held-out fold.
        thresholds: `np.ndarray`, shape `(num_folds,)`. Threshold chosen for each fold.
        scores: `np.ndarray`, shape `(num_pairs,)`. Each pair's cosine as scored when its fold
            was held out (for ROC curves and histograms).
        same: `np.ndarray` of bool, shape `(num_pairs,)`.
        folds: `np.ndarray` of int, shape `(num_pairs,)`.
        fold_sizes: `np.ndarray` of int, shape `(num_folds,)`.
    """

    protocol: str
    fold_accuracies: np.ndarray
    thresholds: np.ndarray
    scores: np.ndarray
    same: np.ndarray
    folds: np.ndarray
    fold_sizes: np.ndarray

    @property
    def mean_accuracy(self) -> float:
        """float. Mean of the fold accuracies."""
        return float(np.mean(self.fold_accuracies))

    @property
    def std_accuracy(self) -> float:
        """float. Population standard deviation (`ddof=0`) of the fold accuracies."""
        return float(np.std(self.fold_accuracies))

    @property
    def mean_threshold(self) -> float:
        """float. Mean of the fold thresholds."""
        return float(np.mean(self.thresholds))


def _check_labels(same, folds, num_pairs: int):
    same = np.asarray(same, dtype=bool)
    folds = np.asarray(folds)
    if same.shape != (num_pairs,) or folds.shape != (num_pairs,):
        raise ValueError(
            f"same and folds need shape ({num_pairs},). "
            f"Received: same.shape={same.shape}, folds.shape={folds.shape}"
        )
    fold_ids = np.unique(folds)
    if fold_ids.size < 2:
        raise ValueError(
            f"k-fold verification needs at least 2 folds. Received: folds={fold_ids.tolist()}"
        )
    return same, folds, fold_ids


def verify_scores(
    scores: np.ndarray, same: np.ndarray, folds: np.ndarray, protocol: str = "scores", steps: int = 10000
) -> VerificationResult:
    """K-fold verification of fixed scores (no per-fold feature processing).

    Args:
        scores: `np.ndarray`, shape `(num_pairs,)`. Similarity of each pair.
        same: `np.ndarray` of bool, shape `(num_pairs,)`. Pair labels.
        folds: `np.ndarray` of int, shape `(num_pairs,)`. Fold of each pair.
        protocol: str. Name recorded in the result.
        steps: int. Threshold grid resolution (`1 / steps`).

    Returns:
        A `VerificationResult`.
    """
    scores = np.asarray(scores, dtype=np.float64)
    same, folds, fold_ids = _check_labels(same, folds, scores.shape[0])
    accuracies, thresholds, sizes = [], [], []
    for fold in fold_ids:
        test = folds == fold
        threshold = best_threshold(scores[~test], same[~test], steps)
        thresholds.append(threshold)
        accuracies.append(accuracy(scores[test], same[test], threshold))
        sizes.append(int(test.sum()))
    return VerificationResult(
        protocol, np.asarray(accuracies), np.asarray(thresholds), scores, same, folds, np.asarray(sizes)
    )


def verify_features(
    left: np.ndarray,
    right: np.ndarray,
    same: np.ndarray,
    folds: np.ndarray,
    subtract_mean: bool,
    protocol: str = "features",
    steps: int = 10000,
) -> VerificationResult:
    """K-fold verification of pair features, with optional per-fold mean subtraction.

    For each held-out fold, the mean of the left and right features of the other folds' pairs
    is subtracted from all features (when `subtract_mean`), the features are L2-normalized, the
    cosine of each pair is its score, the threshold is chosen on the other folds and applied to
    the held-out one.

    Args:
        left: `np.ndarray`, shape `(num_pairs, dim)`. Features of the first image of each pair.
        right: `np.ndarray`, shape `(num_pairs, dim)`. Features of the second image.
        same: `np.ndarray` of bool, shape `(num_pairs,)`. Pair labels.
        folds: `np.ndarray` of int, shape `(num_pairs,)`. Fold of each pair.
        subtract_mean: bool. The SphereFace release's mean subtraction.
        protocol: str. Name recorded in the result.
        steps: int. Threshold grid resolution.

    Returns:
        A `VerificationResult` whose `scores` hold each pair's cosine from its own held-out round.
    """
    left = np.asarray(left, dtype=np.float64)
    right = np.asarray(right, dtype=np.float64)
    if left.ndim != 2 or left.shape != right.shape:
        raise ValueError(
            f"left and right must be 2-D with one shape. "
            f"Received: left.shape={left.shape}, right.shape={right.shape}"
        )
    same, folds, fold_ids = _check_labels(same, folds, left.shape[0])
    if not subtract_mean:
        scores = np.sum(l2_normalize_rows(left) * l2_normalize_rows(right), axis=1)
        return verify_scores(scores, same, folds, protocol, steps)
    accuracies, thresholds, sizes = [], [], []
    held_out_scores = np.zeros(left.shape[0])
    for fold in fold_ids:
        test = folds == fold
        mu = np.mean(np.concatenate([left[~test], right[~test]], axis=0), axis=0)
        scores = np.sum(l2_normalize_rows(left - mu) * l2_normalize_rows(right - mu), axis=1)
        threshold = best_threshold(scores[~test], same[~test], steps)
        thresholds.append(threshold)
        accuracies.append(accuracy(scores[test], same[test], threshold))
        sizes.append(int(test.sum()))
        held_out_scores[test] = scores[test]
    return VerificationResult(
        protocol,
        np.asarray(accuracies),
        np.asarray(thresholds),
        held_out_scores,
        same,
        folds,
        np.asarray(sizes),
    )


def verify_embeddings(
    embeddings: np.ndarray,
    flipped: np.ndarray | None,
    left_index: np.ndarray,
    right_index: np.ndarray,
    same: np.ndarray,
    folds: np.ndarray,
    protocol: str | Protocol = "sphereface",
    steps: int = 10000,
) -> VerificationResult:
    """Runs a named protocol on per-image embeddings.

    Args:
        embeddings: `np.ndarray`, shape `(num_images, dim)`. One embedding per distinct image.
        flipped: `np.ndarray` or None, shape `(num_images, dim)`. Embeddings of the mirrored images
            (None only for the `plain` protocol).
        left_index: `np.ndarray` of int, shape `(num_pairs,)`. Row of each pair's first image.
        right_index: `np.ndarray` of int, shape `(num_pairs,)`. Row of each pair's second image.
        same: `np.ndarray` of bool, shape `(num_pairs,)`.
        folds: `np.ndarray` of int, shape `(num_pairs,)`.
        protocol: str or `Protocol`. `"sphereface"`, `"summed"` or `"plain"`.
        steps: int. Threshold grid resolution.

    Returns:
        A `VerificationResult` named after the protocol.
    """
    protocol = get_protocol(protocol)
    features = combine_flip(embeddings, flipped, protocol.flip)
    return verify_features(
        features[np.asarray(left_index)],
        features[np.asarray(right_index)],
        same,
        folds,
        protocol.subtract_mean,
        protocol.name,
        steps,
    )
