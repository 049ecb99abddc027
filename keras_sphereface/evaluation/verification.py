"""Pair verification: `ksf eval lfw` and `ksf eval pairs` (embed, k-fold protocol, ROC, report, plots).

Everything cheap is checked first (pair list syntax, image files, landmarks, the model's input
size against the crops); only then are images embedded, so bad input fails in seconds.
"""

from __future__ import annotations

import os
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from keras_sphereface import inference
from keras_sphereface.evaluation.pairs import PairList, read_pairs
from keras_sphereface.evaluation.protocol import get_protocol, verify_embeddings
from keras_sphereface.evaluation.report import print_verification_table, verification_report, write_json
from keras_sphereface.evaluation.roc import DEFAULT_FARS, roc_summary
from keras_sphereface.evaluation.sources import (
    EmbeddingOptions,
    check_pairs_available,
    load_checked_embedder,
    make_source,
    model_label,
)
from keras_sphereface.utils.types import ModelLike
from keras_sphereface.version import __version__


def evaluate_pairs(
    pairs: str | os.PathLike | PairList,
    model: ModelLike,
    data_dir: str | os.PathLike,
    *,
    weights: str | os.PathLike | None = None,
    landmarks: str | os.PathLike | None = None,
    images_dir: str | os.PathLike | None = None,
    protocol: str = "sphereface",
    out_dir: str | os.PathLike | None = None,
    skip_missing: bool = False,
    fmt: str = "auto",
    num_folds: int = 10,
    embedding: EmbeddingOptions | None = None,
    show: bool = True,
    fars: Sequence[float] = DEFAULT_FARS,
    dataset: str | None = None,
    command: str | None = None,
) -> dict:
    """Verification on any pair list (LFW format or `path1 path2 same [fold]` lines).

    Args:
        pairs: str, path-like or `PairList`. The pair list file (see `keras_sphereface.evaluation.pairs`),
            or one already parsed (`read_pairs`, `parse_pairs`).
        model: str, path-like or `keras.Model`. Zoo name, `.keras` file, SavedModel directory or model.
        data_dir: str or path-like. Dataset folder; pair paths are relative to `<data>/images` when
            that folder exists, else to `<data>`.
        weights: None or str. Weights of a zoo model (`"casia"`, a file, or None for random).
        landmarks: str, path-like or None. The landmark file (None: `<data>/landmarks.txt`); used as
            `embedding.align` says (`"auto"`: when it exists).
        images_dir: str, path-like or None. Overrides the image folder.
        protocol: str. `"sphereface"`, `"summed"` or `"plain"`.
        out_dir: str, path-like or None. Where `report.json`, `roc.png` and `scores_hist.png` go.
        skip_missing: bool. Evaluate the pairs whose images exist (and have landmarks) and report
            how many were skipped, instead of failing on the first missing image.
        fmt: str. Pair list format: `"auto"`, `"lfw"` or `"generic"` (files only).
        num_folds: int. Folds to form when the file gives none (files only).
        embedding: EmbeddingOptions or None. Alignment, crop, preprocessing, batch size, cache, progress.
        show: bool. Print the result table.
        fars: sequence of floats. False accept rates the report gives TAR at.
        dataset: str or None. The data set's name in the report (default: the pair file).
        command: str or None. The command line, recorded in the report.

    Returns:
        The report dict (also written to `out_dir/report.json`).
    """
    started = time.perf_counter()
    if not isinstance(pairs, PairList):
        pairs = read_pairs(pairs, fmt=fmt, num_folds=num_folds)
    opts = embedding or EmbeddingOptions()
    protocol_spec = get_protocol(protocol)
    source = make_source(data_dir, opts, landmarks, images_dir)
    pairs, skipped = check_pairs_available(pairs, source, skip_missing)
    paths = pairs.image_paths()
    embedder = load_checked_embedder(model, weights, opts, source, paths[0])
    fused = embedder.contract.flip_fusion if embedder.contract is not None else "none"
    if fused != "none" and protocol_spec.needs_flip:
        raise ValueError(f"The export {embedder.name} already fuses each embedding with its mirror's "
                         f"({fused}); evaluate it with --protocol plain. Received: protocol={protocol!r}")
    embed_start = time.perf_counter()
    embeddings, flipped, stats = inference.embed_images(
        embedder,
        paths,
        source,
        flip=protocol_spec.needs_flip,
        batch_size=opts.batch_size,
        cache=inference.open_cache(opts.cache_dir, embedder.fingerprint),
        progress=opts.progress,
    )
    embed_seconds = time.perf_counter() - embed_start
    index = {path: i for i, path in enumerate(paths)}
    result = verify_embeddings(
        embeddings,
        flipped,
        np.array([index[p] for p in pairs.left]),
        np.array([index[p] for p in pairs.right]),
        pairs.same,
        pairs.folds,
        protocol_spec,
    )
    summary = roc_summary(result.scores, result.same, fars)
    report = verification_report(
        result,
        summary,
        dataset=dataset or pairs.source,
        pairs_file=pairs.source,
        folds_from_file=pairs.has_folds,
        model=model_label(model, embedder),
        weights=None if weights is None else os.fspath(weights),
        model_fingerprint=embedder.fingerprint,
        preprocess=embedder.preprocess,
        crops=source.describe() + (f":{source.size[0]}x{source.size[1]}" if source.align == "aligned" else ""),
        images=len(paths),
        embeddings_computed=stats.computed,
        embeddings_from_cache=stats.cached,
        skipped_pairs=len(skipped),
        skipped=skipped[:50],
        embedding_seconds=round(embed_seconds, 2),
        wall_seconds=round(time.perf_counter() - started, 2),
        command=command,
        keras_sphereface_version=__version__,
    )
    if out_dir is not None:
        _write_outputs(report, result, summary, Path(out_dir), protocol_spec.name)
        report["wall_seconds"] = round(time.perf_counter() - started, 2)
        write_json(report, Path(out_dir) / "report.json")
    if show:
        print_verification_table(report)
    return report


def _write_outputs(report: dict, result, summary, out: Path, protocol_name: str) -> None:
    """`roc.png` and `scores_hist.png` of a verification into `out`."""
    from keras_sphereface.evaluation.plots import plot_roc, plot_score_histograms

    out.mkdir(parents=True, exist_ok=True)
    title = f"{report['dataset']} ({protocol_name} protocol)"
    plot_roc(summary, out / "roc.png", title=f"ROC: {title}")
    plot_score_histograms(result.scores, result.same, result.mean_threshold, out / "scores_hist.png",
                          title=f"Held-out cosine scores: {title}")


def evaluate_lfw(
    model: ModelLike,
    data_dir: str | os.PathLike,
    *,
    weights: str | os.PathLike | None = None,
    landmarks: str | os.PathLike | None = None,
    images_dir: str | os.PathLike | None = None,
    protocol: str = "sphereface",
    out_dir: str | os.PathLike | None = None,
    pairs_file: str | os.PathLike = "pairs.txt",
    skip_missing: bool = False,
    embedding: EmbeddingOptions | None = None,
    show: bool = True,
    fars: Sequence[float] = DEFAULT_FARS,
    command: str | None = None,
) -> dict:
    """LFW View 2 10-fold verification (`<data>/pairs.txt`), by default under the SphereFace protocol.

    Args:
        model: str, path-like or `keras.Model`. As in `evaluate_pairs`.
        data_dir: str or path-like. The LFW folder (`images/`, `pairs.txt`, `landmarks.txt`).
        pairs_file: str or path-like. The pair list, relative to `data_dir` unless absolute
            (`pairsDevTest.txt` for View 1).
        weights, landmarks, images_dir, protocol, out_dir, skip_missing, embedding, show, fars, command:
            as in `evaluate_pairs`.

    Returns:
        The report dict.
    """
    path = Path(pairs_file)
    if not path.is_absolute():
        path = Path(data_dir) / path
    return evaluate_pairs(
        path, model, data_dir, weights=weights, landmarks=landmarks, images_dir=images_dir, protocol=protocol,
        out_dir=out_dir, skip_missing=skip_missing, fmt="lfw", embedding=embedding, show=show, fars=fars,
        dataset=f"LFW {path.name}", command=command,
    )
