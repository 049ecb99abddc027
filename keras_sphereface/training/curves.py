"""Training curves of a run: loss, A-Softmax lambda and validation accuracy from its `metrics.csv`."""

from __future__ import annotations

import csv
import os
from pathlib import Path


def read_metrics(path: str | os.PathLike) -> dict[str, list[tuple[int, float]]]:
    """Reads a run's `metrics.csv` into `{figure: [(step, value), ...]}` (empty cells skipped).

    Args:
        path: str or path-like. `<out>/metrics.csv` or the run folder.

    Returns:
        dict from column name (`loss`, `accuracy`, `lambda`, `lr`, `images_per_s`, `val_accuracy`,
        `wall_s`, `epoch`) to `(step, value)` pairs in file order.
    """
    path = Path(path)
    if path.is_dir():
        path = path / "metrics.csv"
    series: dict[str, list[tuple[int, float]]] = {}
    with open(path, newline="", encoding="utf-8") as handle:
        for row in csv.DictReader(handle):
            step = int(row["step"])
            for key, value in row.items():
                if key != "step" and value not in ("", None):
                    series.setdefault(key, []).append((step, float(value)))
    return series


def plot_training_curves(runs: dict[str, str | os.PathLike], out_file: str | os.PathLike, title: str = "") -> Path:
    """Plots loss (log scale), lambda and validation accuracy against the step, one line per run.

    Args:
        runs: dict from a label to a run folder (or its `metrics.csv`).
        out_file: str or path-like. The PNG to write (atomically).
        title: str. Figure title.

    Returns:
        The PNG path. Needs matplotlib (`pip install keras-sphereface[plots]`).
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from keras_sphereface.utils.atomic import atomic_path

    figure, axes = plt.subplots(1, 3, figsize=(12, 3.4))
    for label, folder in runs.items():
        series = read_metrics(folder)
        for axis, key in zip(axes, ("loss", "lambda", "val_accuracy"), strict=True):
            points = series.get(key, [])
            if points:
                steps, values = zip(*points, strict=True)
                scale = 100.0 if key == "val_accuracy" else 1.0
                axis.plot(steps, [v * scale for v in values], marker="o" if key == "val_accuracy" else None,
                          markersize=3, label=label)
    axes[0].set(title="training loss (softmax cross-entropy)", xlabel="step", yscale="log")
    axes[1].set(title="A-Softmax lambda", xlabel="step", yscale="log")
    axes[2].set(title="validation accuracy (%)", xlabel="step")
    for axis in axes:
        axis.grid(alpha=0.3)
    if len(runs) > 1:
        axes[2].legend(fontsize=8)
    if title:
        figure.suptitle(title, fontsize=10)
    figure.tight_layout()
    out_file = Path(out_file)
    with atomic_path(out_file) as tmp:
        figure.savefig(tmp, dpi=80)
    plt.close(figure)
    return out_file
