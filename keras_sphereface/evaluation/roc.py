"""ROC curve, AUC, EER and TAR at fixed FAR for verification scores.

A pair is accepted (declared "same") when its score is strictly greater than the threshold,
as in the LFW protocol.
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np

DEFAULT_FARS = (1e-1, 1e-2, 1e-3)


@dataclasses.dataclass(frozen=True)
class RocCurve:
    """A ROC curve.

    Attributes:
        far: `np.ndarray`, shape `(num_points,)`. False accept rate, from 0 to 1 (increasing).
        tar: `np.ndarray`, shape `(num_points,)`. True accept rate at the same thresholds.
        thresholds: `np.ndarray`, shape `(num_points,)`. Pairs with a score `>=` the threshold are
            accepted at that point; the first point (`far = tar = 0`) has threshold `+inf`.
    """

    far: np.ndarray
    tar: np.ndarray
    thresholds: np.ndarray


def _split(scores, same):
    scores = np.asarray(scores, dtype=np.float64)
    same = np.asarray(same, dtype=bool)
    if scores.shape != same.shape or scores.ndim != 1:
        raise ValueError(
            f"scores and same must be 1-D with one shape. "
            f"Received: scores.shape={scores.shape}, same.shape={same.shape}"
        )
    if same.all() or not same.any():
        raise ValueError(
            f"ROC needs both same and different pairs. "
            f"Received: {int(same.sum())} same of {same.size} pairs"
        )
    return scores[same], scores[~same]


def roc_curve(scores: np.ndarray, same: np.ndarray) -> RocCurve:
    """Computes the ROC curve at every distinct score.

    Args:
        scores: `np.ndarray`, shape `(num_pairs,)`. Similarity scores (higher: more alike).
        same: `np.ndarray` of bool, shape `(num_pairs,)`. Pair labels.

    Returns:
        A `RocCurve` from `(0, 0)` to `(1, 1)`.
    """
    positives, negatives = _split(scores, same)
    levels = np.unique(np.concatenate([positives, negatives]))[::-1]
    # Pairs with score >= level are accepted.
    tar = (positives.size - np.searchsorted(np.sort(positives), levels, side="left")) / positives.size
    far = (negatives.size - np.searchsorted(np.sort(negatives), levels, side="left")) / negatives.size
    return RocCurve(
        np.concatenate([[0.0], far]), np.concatenate([[0.0], tar]), np.concatenate([[np.inf], levels])
    )


def auc(curve: RocCurve) -> float:
    """Area under a ROC curve (trapezoidal; equals P(positive > negative) + P(tie) / 2)."""
    return float(np.sum(np.diff(curve.far) * (curve.tar[1:] + curve.tar[:-1]) / 2.0))


def eer(curve: RocCurve) -> float:
    """Equal error rate: where the false accept rate equals the false reject rate `1 - tar`.

    Found by linear interpolation between the two ROC points around the crossing.
    """
    frr = 1.0 - curve.tar
    diff = curve.far - frr  # increasing from -1 to 1 along the curve
    index = int(np.searchsorted(diff, 0.0, side="left"))
    if index == 0:
        return float(curve.far[0])
    d0, d1 = diff[index - 1], diff[index]
    weight = 0.0 if d1 == d0 else -d0 / (d1 - d0)
    return float(curve.far[index - 1] + weight * (curve.far[index] - curve.far[index - 1]))


@dataclasses.dataclass(frozen=True)
class TarAtFar:
    """TAR at one target FAR.

    Attributes:
        far: float. The target false accept rate.
        tar: float or None. True accept rate at the strictest threshold whose FAR is `<= far`;
            None when there are too few different pairs to measure this FAR.
        threshold: float or None. Pairs with a score `> threshold` are accepted.
        achieved_far: float or None. The FAR actually reached (`<= far`).
        note: str. Empty, or why `tar` is None.
    """

    far: float
    tar: float | None
    threshold: float | None
    achieved_far: float | None
    note: str = ""


def tar_at_far(scores: np.ndarray, same: np.ndarray, far: float) -> TarAtFar:
    """True accept rate at a false accept rate of at most `far`.

    The threshold is the `(k+1)`-th largest different-pair score with `k = floor(far * n_diff)`, so
    at most `k` different pairs score above it. A FAR below `1 / n_diff` cannot be measured (it
    would need to reject every different pair, which says nothing about that FAR); then `tar` is
    None and `note` says how many different pairs it would take.

    Args:
        scores: `np.ndarray`, shape `(num_pairs,)`.
        same: `np.ndarray` of bool, shape `(num_pairs,)`.
        far: float. Target false accept rate in `(0, 1)`.
    """
    if not 0.0 < far < 1.0:
        raise ValueError(f"far must be in (0, 1). Received: far={far}")
    positives, negatives = _split(scores, same)
    allowed = math.floor(far * negatives.size + 1e-9)
    if allowed < 1:
        needed = math.ceil(1.0 / far - 1e-9)
        return TarAtFar(
            far,
            None,
            None,
            None,
            f"not enough pairs: FAR={far:g} needs at least {needed} different pairs, "
            f"got {negatives.size}",
        )
    ordered = np.sort(negatives)[::-1]
    threshold = float(ordered[allowed])
    achieved = float(np.mean(negatives > threshold))
    return TarAtFar(far, float(np.mean(positives > threshold)), threshold, achieved)


@dataclasses.dataclass(frozen=True)
class RocSummary:
    """ROC figures of a set of scored pairs.

    Attributes:
        curve: `RocCurve`.
        auc: float. Area under the curve.
        eer: float. Equal error rate.
        tar_at_far: tuple of `TarAtFar`.
        num_same: int. Number of same pairs.
        num_different: int. Number of different pairs.
    """

    curve: RocCurve
    auc: float
    eer: float
    tar_at_far: tuple[TarAtFar, ...]
    num_same: int
    num_different: int


def roc_summary(scores: np.ndarray, same: np.ndarray, fars=DEFAULT_FARS) -> RocSummary:
    """Returns ROC curve, AUC, EER and TAR at each FAR in `fars` for the scored pairs."""
    curve = roc_curve(scores, same)
    same = np.asarray(same, dtype=bool)
    return RocSummary(
        curve,
        auc(curve),
        eer(curve),
        tuple(tar_at_far(scores, same, f) for f in fars),
        int(same.sum()),
        int((~same).sum()),
    )
