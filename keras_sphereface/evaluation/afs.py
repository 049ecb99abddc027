"""`ksf eval afs`: the Angular Fisher Score of a labelled image folder or of TFRecords."""

from __future__ import annotations

import os
import time
from pathlib import Path

import numpy as np

from keras_sphereface import inference
from keras_sphereface.evaluation.fisher import angular_fisher_score
from keras_sphereface.evaluation.protocol import combine_flip
from keras_sphereface.evaluation.report import write_json
from keras_sphereface.evaluation.sources import (
    EmbeddingOptions,
    labelled_source,
    load_checked_embedder,
    model_label,
)
from keras_sphereface.utils.types import ModelLike
from keras_sphereface.version import __version__


def angular_fisher_score_of_folder(
    model: ModelLike,
    data_dir: str | os.PathLike,
    *,
    weights: str | os.PathLike | None = None,
    landmarks: str | os.PathLike | None = None,
    images_dir: str | os.PathLike | None = None,
    min_images: int = 10,
    records: str = "*.tfrecord",
    flip: str = "none",
    skip_missing: bool = False,
    out_dir: str | os.PathLike | None = None,
    embedding: EmbeddingOptions | None = None,
    show: bool = True,
    command: str | None = None,
) -> dict:
    """The Angular Fisher Score of a labelled image folder (`<images>/<identity>/<image>`) or TFRecords.

    When `data_dir` holds files matching `records` (TFRecords written by `ksf make-tfrecords`),
    the examples of those files are used: identity from their `identity` feature (else `label`),
    aligned with their stored landmarks, or taken as aligned crops when they store none.

    Args:
        model: str, path-like or `keras.Model`. As in `evaluate_pairs`.
        data_dir: str or path-like. Dataset folder (LFW: `images/` + `landmarks.txt`).
        weights: None or str. Weights of a zoo model (None: random initialization).
        landmarks: str, path-like or None. As in `evaluate_pairs`.
        images_dir: str, path-like or None. Overrides the image folder.
        min_images: int. Only identities with at least this many images count.
        records: str. Glob pattern of TFRecord files inside `data_dir`.
        flip: str. `"none"` (one embedding per image), `"concat"` or `"sum"` with the mirror's.
        skip_missing: bool. Leave out images without landmarks instead of failing.
        out_dir: str, path-like or None. Where `afs.json` goes.
        embedding: EmbeddingOptions or None. Alignment, crop, preprocessing, batch size, cache, progress.
        show: bool. Print the result.
        command: str or None. Recorded in the report.

    Returns:
        dict with `angular_fisher_score`, `identities`, `images` and the run's settings.
    """
    started = time.perf_counter()
    opts = embedding or EmbeddingOptions()
    if min_images < 2:
        raise ValueError(f"min_images must be at least 2. Received: min_images={min_images}")
    source, paths, labels = labelled_source(data_dir, opts, landmarks, images_dir, min_images, records)
    missing = [p for p in paths if source.check_available(p)]
    if missing and not skip_missing:
        raise FileNotFoundError(
            f"{source.check_available(missing[0])} ({len(missing)} images affected). Use "
            f"--skip-missing to leave them out. Received: image={missing[0]!r}"
        )
    missing_set = set(missing)
    keep = [i for i, p in enumerate(paths) if p not in missing_set]
    paths, labels = [paths[i] for i in keep], [labels[i] for i in keep]
    if len(set(labels)) < 2:
        raise ValueError(
            f"Fewer than two identities with at least {min_images} images in {source.root}. "
            f"Received: min_images={min_images}, identities={len(set(labels))}"
        )
    embedder = load_checked_embedder(model, weights, opts, source, paths[0])
    embeddings, flipped, stats = inference.embed_images(
        embedder,
        paths,
        source,
        flip=flip != "none",
        batch_size=opts.batch_size,
        cache=inference.open_cache(opts.cache_dir, embedder.fingerprint),
        progress=opts.progress,
    )
    score = angular_fisher_score(combine_flip(embeddings, flipped, flip), np.asarray(labels))
    report = {
        "angular_fisher_score": score,
        "identities": len(set(labels)),
        "images": len(paths),
        "min_images": min_images,
        "skipped_images": len(missing),
        "flip": flip,
        "model": model_label(model, embedder),
        "weights": None if weights is None else os.fspath(weights),
        "model_fingerprint": embedder.fingerprint,
        "crops": source.describe(),
        "embeddings_computed": stats.computed,
        "embeddings_from_cache": stats.cached,
        "wall_seconds": round(time.perf_counter() - started, 2),
        "command": command,
        "keras_sphereface_version": __version__,
    }
    if out_dir is not None:
        write_json(report, Path(out_dir) / "afs.json")
    if show:
        from rich.console import Console

        Console().print(
            f"Angular Fisher Score {score:.4f} (lower is better) over {report['identities']} "
            f"identities, {report['images']} images (>= {min_images} each), model "
            f"{report['model']} weights={report['weights']}"
        )
    return report
