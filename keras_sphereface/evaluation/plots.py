"""Evaluation plots (matplotlib, Agg backend): ROC curve, score histograms, CMC curve, written atomically."""

from __future__ import annotations

import os

import numpy as np

from keras_sphereface.evaluation.roc import RocSummary
from keras_sphereface.utils.atomic import atomic_path


def _pyplot():
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    return plt


def _save(figure, path: str | os.PathLike) -> None:
    with atomic_path(path) as tmp:
        figure.savefig(tmp, format="png", dpi=120)


def plot_roc(summary: RocSummary, path: str | os.PathLike, title: str = "ROC") -> None:
    """Writes the ROC curve (TAR against FAR, FAR on a log axis) with AUC and EER to a PNG file.

    Args:
        summary: `RocSummary`.
        path: str or path-like. The `.png` file.
        title: str. Figure title.
    """
    plt = _pyplot()
    curve = summary.curve
    figure, axis = plt.subplots(figsize=(5.5, 4.5))
    try:
        floor = 0.5 / max(summary.num_different, 1)
        axis.plot(
            np.maximum(curve.far, floor),
            curve.tar,
            lw=1.5,
            label=f"AUC {summary.auc:.5f}, EER {100 * summary.eer:.2f}%",
        )
        for point in summary.tar_at_far:
            if point.tar is not None:
                axis.plot(
                    point.far,
                    point.tar,
                    "o",
                    ms=4,
                    label=f"TAR@FAR={point.far:g}: {100 * point.tar:.2f}%",
                )
        axis.set_xscale("log")
        axis.set_xlim(floor, 1.0)
        axis.set_ylim(min(0.8, float(curve.tar[np.searchsorted(curve.far, 1e-2)])) - 0.02, 1.005)
        axis.set_xlabel(f"false accept rate ({summary.num_different} different pairs)")
        axis.set_ylabel(f"true accept rate ({summary.num_same} same pairs)")
        axis.set_title(title)
        axis.grid(True, which="both", alpha=0.3)
        axis.legend(loc="lower right", fontsize=8)
        figure.tight_layout()
        _save(figure, path)
    finally:
        plt.close(figure)


def plot_score_histograms(
    scores: np.ndarray,
    same: np.ndarray,
    threshold: float,
    path: str | os.PathLike,
    title: str = "Cosine similarity",
) -> None:
    """Writes histograms of the same-pair and different-pair scores, with the threshold, to a PNG.

    Args:
        scores: `np.ndarray`, shape `(num_pairs,)`. Cosine similarities.
        same: `np.ndarray` of bool, shape `(num_pairs,)`.
        threshold: float. Drawn as a vertical line (e.g. the mean fold threshold).
        path: str or path-like. The `.png` file.
        title: str. Figure title.
    """
    plt = _pyplot()
    scores = np.asarray(scores, dtype=np.float64)
    same = np.asarray(same, dtype=bool)
    figure, axis = plt.subplots(figsize=(6, 4))
    try:
        bins = np.linspace(min(-0.2, scores.min()), max(1.0, scores.max()), 61)
        axis.hist(scores[same], bins=bins, alpha=0.6, color="tab:green", label=f"same ({same.sum()})")
        axis.hist(
            scores[~same], bins=bins, alpha=0.6, color="tab:red", label=f"different ({(~same).sum()})"
        )
        axis.axvline(threshold, color="black", ls="--", lw=1, label=f"threshold {threshold:.4f}")
        axis.set_xlabel("cosine similarity")
        axis.set_ylabel("pairs")
        axis.set_title(title)
        axis.legend(fontsize=8)
        figure.tight_layout()
        _save(figure, path)
    finally:
        plt.close(figure)


def plot_cmc(cmc: np.ndarray, path: str | os.PathLike, title: str = "CMC", marks: tuple[int, ...] = (1, 5, 10)) -> None:
    """Writes a cumulative match characteristic (identification rate against rank) to a PNG file.

    Args:
        cmc: `np.ndarray`, shape `(max_rank,)`. Identification rate at ranks 1..max_rank, in `[0, 1]`.
        path: str or path-like. The `.png` file.
        title: str. Figure title.
        marks: tuple of int. Ranks labelled with their rate.
    """
    plt = _pyplot()
    cmc = np.asarray(cmc, dtype=np.float64)
    ranks = np.arange(1, len(cmc) + 1)
    figure, axis = plt.subplots(figsize=(5.5, 4.5))
    try:
        axis.plot(ranks, 100 * cmc, "-o", ms=3, lw=1.5)
        for rank in marks:
            if rank <= len(cmc):
                axis.annotate(f"rank-{rank}: {100 * cmc[rank - 1]:.2f}%", (rank, 100 * cmc[rank - 1]),
                              textcoords="offset points", xytext=(6, -12), fontsize=8)
        axis.set_xlabel("rank")
        axis.set_ylabel("identification rate (%)")
        axis.set_xlim(0.5, len(cmc) + 0.5)
        axis.set_ylim(max(0.0, 100 * cmc[0] - 5), 100.5)
        axis.set_title(title)
        axis.grid(True, alpha=0.3)
        figure.tight_layout()
        _save(figure, path)
    finally:
        plt.close(figure)
