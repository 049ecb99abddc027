"""Verification reports: a JSON document (written atomically) and a rich table."""

from __future__ import annotations

import json
import os
from typing import Any

import numpy as np

from keras_sphereface.evaluation.protocol import VerificationResult, get_protocol
from keras_sphereface.evaluation.roc import RocSummary
from keras_sphereface.utils.atomic import atomic_write


def verification_report(result: VerificationResult, summary: RocSummary, **metadata: Any) -> dict:
    """Builds the report of a verification run.

    Args:
        result: `VerificationResult`.
        summary: `RocSummary` of `result.scores`.
        **metadata: JSON-serializable facts about the run (model, data, skipped pairs, timing...).

    Returns:
        dict with the protocol (name and description), the fold table, mean and std accuracy,
        AUC, EER, TAR@FAR (with a note where there are too few pairs) and `metadata`.
    """
    try:
        description = get_protocol(result.protocol).description
    except ValueError:
        description = result.protocol
    folds = [
        {"fold": i + 1, "accuracy": float(acc), "threshold": float(thr), "pairs": int(size)}
        for i, (acc, thr, size) in enumerate(
            zip(result.fold_accuracies, result.thresholds, result.fold_sizes, strict=True)
        )
    ]
    return {
        "protocol": result.protocol,
        "protocol_description": description,
        "num_pairs": int(result.same.size),
        "num_same": summary.num_same,
        "num_different": summary.num_different,
        "folds": folds,
        "mean_accuracy": result.mean_accuracy,
        "std_accuracy": result.std_accuracy,
        "std_definition": "population standard deviation (ddof=0) of the fold accuracies",
        "mean_threshold": result.mean_threshold,
        "auc": summary.auc,
        "eer": summary.eer,
        "tar_at_far": [
            {
                "far": p.far,
                "tar": p.tar,
                "threshold": p.threshold,
                "achieved_far": p.achieved_far,
                "note": p.note,
            }
            for p in summary.tar_at_far
        ],
        **metadata,
    }


def _default(value):
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, os.PathLike):
        return os.fspath(value)
    raise TypeError(f"Not JSON serializable: {type(value).__name__}")


def write_json(report: dict, path: str | os.PathLike) -> None:
    """Writes `report` as indented JSON, atomically."""
    with atomic_write(path) as handle:
        json.dump(report, handle, indent=2, default=_default)
        handle.write("\n")


def print_verification_table(report: dict, console=None) -> None:
    """Prints the fold table and the summary figures of a verification report with rich."""
    from rich.console import Console
    from rich.table import Table

    console = console or Console()
    table = Table(title=f"{report.get('dataset', 'verification')}: protocol {report['protocol']}")
    table.add_column("fold", justify="right")
    table.add_column("pairs", justify="right")
    table.add_column("threshold", justify="right")
    table.add_column("accuracy", justify="right")
    for fold in report["folds"]:
        table.add_row(
            str(fold["fold"]),
            str(fold["pairs"]),
            f"{fold['threshold']:.4f}",
            f"{100 * fold['accuracy']:.2f}%",
        )
    table.add_section()
    table.add_row(
        "mean ± std",
        str(report["num_pairs"]),
        f"{report['mean_threshold']:.4f}",
        f"{100 * report['mean_accuracy']:.2f}% ± {100 * report['std_accuracy']:.2f}",
    )
    console.print(table)
    console.print(f"AUC {report['auc']:.5f}   EER {100 * report['eer']:.2f}%")
    for point in report["tar_at_far"]:
        if point["tar"] is None:
            console.print(f"TAR@FAR={point['far']:g}: n/a ({point['note']})")
        else:
            console.print(
                f"TAR@FAR={point['far']:g}: {100 * point['tar']:.2f}% "
                f"(threshold {point['threshold']:.4f}, FAR reached {point['achieved_far']:.2e})"
            )
    if report.get("skipped_pairs"):
        console.print(f"[yellow]skipped {report['skipped_pairs']} pairs with missing images[/yellow]")
