"""`ksf eval identify`: closed- and open-set identification on a labelled folder (LFW), report and CMC plot.

Images come as in every `ksf eval` command (`sources.make_source`: the image folder, alignment, the
checked embedder) and are embedded through `inference.embed_images` with the same embedding cache as
`ksf eval lfw`, one embedding per image (`flip="none"`, what a gallery holds) or fused with the mirror's.
The split is `identification.lfw_identification_split`; the figures `identification.identify_embeddings`.
"""

from __future__ import annotations

import os
import time
from collections.abc import Sequence
from pathlib import Path

from keras_sphereface import inference
from keras_sphereface.evaluation.identification import (
    DEFAULT_IDENTIFICATION_FARS,
    DEFAULT_RANKS,
    IdentificationResult,
    identify_embeddings,
    lfw_identification_split,
)
from keras_sphereface.evaluation.protocol import combine_flip
from keras_sphereface.evaluation.report import write_json
from keras_sphereface.evaluation.sources import (
    EmbeddingOptions,
    labelled_images,
    load_checked_embedder,
    make_source,
    model_label,
)
from keras_sphereface.utils.types import ModelLike
from keras_sphereface.utils.vectors import l2_normalize_rows
from keras_sphereface.version import __version__

#: What the report says about the split.
PROTOCOL_DESCRIPTION = ("gallery: the first image (sorted by file name) of every person with >= 2 images; genuine "
                        "probes: their other images; impostor probes: every person with exactly 1 image")


def evaluate_identification(
    model: ModelLike,
    data_dir: str | os.PathLike,
    *,
    weights: str | os.PathLike | None = None,
    landmarks: str | os.PathLike | None = None,
    images_dir: str | os.PathLike | None = None,
    flip: str = "none",
    skip_missing: bool = False,
    out_dir: str | os.PathLike | None = None,
    embedding: EmbeddingOptions | None = None,
    ranks: Sequence[int] = DEFAULT_RANKS,
    fars: Sequence[float] = DEFAULT_IDENTIFICATION_FARS,
    show: bool = True,
    command: str | None = None,
) -> dict:
    """1:N identification of a labelled image folder `<images>/<identity>/<image>` (LFW by default).

    Args:
        model: str, path-like or `keras.Model`. As in `evaluate_pairs`.
        data_dir: str or path-like. The dataset folder (LFW: `images/` and `landmarks.txt`).
        weights, landmarks, images_dir, embedding, command: as in `evaluate_pairs`.
        flip: str. `"none"` (one embedding per image), `"concat"` or `"sum"` with the mirror's.
        skip_missing: bool. Leave out images without landmarks (and say how many) instead of failing.
        out_dir: str, path-like or None. Where `report.json` and `cmc.png` go.
        ranks: sequence of int. CMC ranks reported.
        fars: sequence of float. False accept rates DIR is reported at.
        show: bool. Print the table.

    Returns:
        The report dict (also `out_dir/report.json`).

    Raises:
        FileNotFoundError: an image without landmarks (without `skip_missing`), no image folder.
        ValueError: a folder without people of 2+ images or of 1 image, a model that does not fit the crops.
    """
    started = time.perf_counter()
    opts = embedding or EmbeddingOptions()
    source = make_source(data_dir, opts, landmarks, images_dir)
    paths, labels = labelled_images(source.root)
    problems = [(p, why) for p in paths if (why := source.check_available(p))]
    if problems and not skip_missing:
        raise FileNotFoundError(f"{problems[0][1]} ({len(problems)} images affected). Use --skip-missing to leave "
                                f"them out. Received: image={problems[0][0]!r}")
    left_out = {p for p, _ in problems}
    kept = [(p, label) for p, label in zip(paths, labels, strict=True) if p not in left_out]
    split = lfw_identification_split([p for p, _ in kept], [label for _, label in kept])
    everything = split.gallery + split.probes + split.impostors
    embedder = load_checked_embedder(model, weights, opts, source, everything[0])
    embed_start = time.perf_counter()
    vectors, flipped, stats = inference.embed_images(
        embedder, everything, source, flip=flip != "none", batch_size=opts.batch_size,
        cache=inference.open_cache(opts.cache_dir, embedder.fingerprint), progress=opts.progress,
    )
    embed_seconds = time.perf_counter() - embed_start
    vectors = l2_normalize_rows(combine_flip(vectors, flipped, flip))
    g, p = len(split.gallery), len(split.probes)
    result = identify_embeddings(vectors[:g], split.gallery_labels, vectors[g:g + p], split.probe_labels,
                                 vectors[g + p:], ranks=ranks, fars=fars)
    report = identification_report(result)
    report.update(
        dataset=f"{Path(data_dir).name} identification", protocol_description=PROTOCOL_DESCRIPTION,
        **split.counts(), skipped_images=len(problems), skipped=[{"image": i, "reason": r} for i, r in problems[:50]],
        flip=flip, model=model_label(model, embedder), weights=None if weights is None else os.fspath(weights),
        model_fingerprint=embedder.fingerprint, crops=source.describe(), embeddings_computed=stats.computed,
        embeddings_from_cache=stats.cached, embedding_seconds=round(embed_seconds, 2),
        wall_seconds=round(time.perf_counter() - started, 2), command=command, keras_sphereface_version=__version__,
    )
    if out_dir is not None:
        from keras_sphereface.evaluation.plots import plot_cmc

        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        plot_cmc(result.cmc, out / "cmc.png", title=f"CMC: {report['dataset']} ({report['gallery_identities']} "
                                                    f"identities)", marks=result.ranks)
        write_json(report, out / "report.json")
    if show:
        print_identification_table(report)
    return report


def identification_report(result: IdentificationResult) -> dict:
    """The figures of an `IdentificationResult` as JSON-ready data (CMC at its ranks, the curve, DIR@FAR)."""
    return {
        "protocol": "identification",
        "cmc_at_rank": {str(r): result.rank_rate(r) for r in result.ranks},
        "cmc_curve": [float(v) for v in result.cmc],
        "dir_at_far": [
            {"far": point.far, "dir": point.tar, "threshold": point.threshold, "achieved_far": point.achieved_far,
             "note": point.note.replace("different pairs", "impostor probes")}
            for point in result.dir_at_far
        ],
        "mean_mate_score": float(result.genuine_scores.mean()),
        "mean_impostor_best_score": float(result.impostor_scores.mean()),
    }


def print_identification_table(report: dict, console=None) -> None:
    """Prints the closed-set (CMC) and open-set (DIR@FAR) figures of an identification report with rich."""
    from rich.console import Console
    from rich.table import Table

    console = console or Console()
    table = Table(title=f"{report.get('dataset', 'identification')}: {report.get('gallery_identities')} gallery "
                        f"identities, {report.get('genuine_probes')} genuine and {report.get('impostor_probes')} "
                        f"impostor probes")
    table.add_column("measure")
    table.add_column("value", justify="right")
    table.add_column("threshold", justify="right")
    for rank, rate in report["cmc_at_rank"].items():
        table.add_row(f"closed set: rank-{rank}", f"{100 * rate:.2f}%", "")
    for point in report["dir_at_far"]:
        if point["dir"] is None:
            table.add_row(f"open set: DIR@FAR={point['far']:g}", "n/a", point["note"])
        else:
            table.add_row(f"open set: DIR@FAR={point['far']:g}", f"{100 * point['dir']:.2f}%",
                          f"{point['threshold']:.4f}")
    console.print(table)
    if report.get("skipped_images"):
        console.print(f"[yellow]skipped {report['skipped_images']} images without landmarks or files[/yellow]")
