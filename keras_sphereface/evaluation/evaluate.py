"""One function per `ksf eval` subcommand: LFW, any pair list, and the Angular Fisher Score of a folder.

Each validates everything cheap first (pair list syntax, image files, landmarks, the model's
input size against the crops) and only then embeds images, so bad input fails in seconds.
"""

from __future__ import annotations

import dataclasses
import os
import time
from collections import Counter
from pathlib import Path

import numpy as np

from keras_sphereface import inference
from keras_sphereface.data.align import template_size
from keras_sphereface.data.face_source import FaceSource
from keras_sphereface.data.images import IMAGE_EXTENSIONS, decode_image_rgb
from keras_sphereface.data.landmarks import read_landmarks
from keras_sphereface.evaluation.fisher import angular_fisher_score
from keras_sphereface.evaluation.pairs import PairList, read_pairs
from keras_sphereface.evaluation.protocol import combine_flip, get_protocol, verify_embeddings
from keras_sphereface.evaluation.report import print_verification_table, verification_report, write_json
from keras_sphereface.evaluation.roc import DEFAULT_FARS, roc_summary
from keras_sphereface.version import __version__


@dataclasses.dataclass(frozen=True)
class EmbeddingOptions:
    """How images become embeddings in an evaluation (the settings every `ksf eval` command shares).

    Attributes:
        template: str. Alignment template (`"sphereface"` or `"arcface"`).
        crop_size: tuple of 2 ints or None. Crop `(height, width)`; None: the template's native size.
        interpolation: str. Warp interpolation.
        preprocess: str or None. Pixel preprocessing name; None: the model's own.
        batch_size: int. Images per forward pass.
        cache_dir: str, path-like, bool or None. Embedding cache folder; None or True: the default
            cache, False: no cache.
        progress: bool. Show a progress bar.
    """

    template: str = "sphereface"
    crop_size: tuple[int, int] | None = None
    interpolation: str = "bilinear"
    preprocess: str | None = None
    batch_size: int = 64
    cache_dir: str | os.PathLike | bool | None = None
    progress: bool = True

    @classmethod
    def take_from(cls, kwargs: dict) -> EmbeddingOptions:
        """Builds the options from the matching keys of `kwargs`, removing them from it."""
        names = [field.name for field in dataclasses.fields(cls)]
        return cls(**{name: kwargs.pop(name) for name in names if name in kwargs})


def image_root(data_dir: str | os.PathLike, images_dir: str | os.PathLike | None = None) -> Path:
    """The folder image paths are relative to: `images_dir`, else `<data>/images`, else `<data>`."""
    if images_dir is not None:
        root = Path(images_dir)
    else:
        data = Path(data_dir)
        root = data / "images" if (data / "images").is_dir() else data
    if not root.is_dir():
        raise FileNotFoundError(f"Image folder not found. Received: images_dir={str(root)!r}")
    return root


def make_source(
    data_dir,
    landmarks="auto",
    images_dir=None,
    template: str = "sphereface",
    crop_size: tuple[int, int] | None = None,
    interpolation: str = "bilinear",
) -> FaceSource:
    """Builds the `FaceSource` of a dataset folder.

    Args:
        data_dir: str or path-like. Dataset folder (e.g. `$KSF_DATA_DIR/lfw`).
        landmarks: `"auto"`, None, or a path. `"auto"` uses `<data>/landmarks.txt` when it exists
            and otherwise treats the images as aligned crops; None always treats them as crops.
        images_dir: str, path-like or None. See `image_root`.
        template: str. Alignment template (`"sphereface"` or `"arcface"`).
        crop_size: tuple of 2 ints or None. Crop `(height, width)`; None: the template's native size.
        interpolation: str. Warp interpolation.
    """
    root = image_root(data_dir, images_dir)
    size = tuple(crop_size) if crop_size is not None else template_size(template)
    if isinstance(landmarks, str) and landmarks == "auto":
        candidate = Path(data_dir) / "landmarks.txt"
        landmarks = candidate if candidate.is_file() else None
    points = read_landmarks(landmarks) if landmarks is not None else None
    return FaceSource(root, points, template, size, interpolation)


def _check_pairs_available(pairs: PairList, source: FaceSource, skip_missing: bool):
    problems = {path: source.check_available(path) for path in pairs.image_paths()}
    problems = {path: why for path, why in problems.items() if why}
    if not problems:
        return pairs, []
    bad = np.array(
        [a in problems or b in problems for a, b in zip(pairs.left, pairs.right, strict=True)]
    )
    skipped = [
        {
            "line": int(line),
            "left": left,
            "right": right,
            "reason": "; ".join(problems[p] for p in (left, right) if p in problems),
        }
        for line, left, right, is_bad in zip(pairs.lines, pairs.left, pairs.right, bad, strict=True)
        if is_bad
    ]
    if not skip_missing:
        first = skipped[0]
        more = f" ({len(skipped) - 1} more pairs affected)" if len(skipped) > 1 else ""
        raise FileNotFoundError(
            f"{pairs.source}, line {first['line']}: {first['reason']}{more}. Use --skip-missing "
            f"(skip_missing=True) to evaluate the other pairs. "
            f"Received: pair={first['left']!r} {first['right']!r}"
        )
    kept = pairs.subset(~bad)
    for label, name in ((True, "same"), (False, "different")):
        for fold in np.unique(pairs.folds):
            if not np.any((kept.folds == fold) & (kept.same == label)):
                raise ValueError(
                    f"{pairs.source}: after skipping {len(skipped)} pairs with missing images, "
                    f"fold {fold + 1} has no {name} pairs left. Received: skipped={len(skipped)}"
                )
    return kept, skipped


def _check_prealigned(source: FaceSource, first_path: str, embedder: inference.Embedder):
    if source.landmarks is not None:
        return
    shape = decode_image_rgb(source.load_bytes(first_path), source=first_path).shape
    if tuple(shape[:2]) != tuple(embedder.input_size):
        raise ValueError(
            f"No landmark file, so the images must be aligned crops of the model's input size "
            f"{tuple(embedder.input_size)} (height, width); {first_path} is {shape[0]}x{shape[1]}. Give "
            f"--landmarks or aligned crops. Received: image shape={tuple(shape)}"
        )


def _resolve_cache(cache_dir, fingerprint: str):
    if cache_dir is False:
        return None
    directory = inference.default_cache_dir() if cache_dir in (None, True) else Path(cache_dir)
    return inference.EmbeddingCache(directory, fingerprint)


def _load_checked_embedder(
    model, weights, preprocess, batch_size, source: FaceSource, first_path: str
):
    embedder = inference.load_embedder(model, weights=weights, preprocess=preprocess, batch_size=batch_size)
    contract = embedder.contract
    if contract is not None and source.landmarks is not None and contract.alignment_template != source.template:
        raise ValueError(f"The export {embedder.name} takes faces aligned to the {contract.alignment_template!r} "
                         f"template (its contract); use --template {contract.alignment_template}. "
                         f"Received: template={source.template!r}")
    if source.landmarks is None:
        source.size = tuple(embedder.input_size)
        _check_prealigned(source, first_path, embedder)
    inference.check_input_size(embedder, source)
    return embedder


def evaluate_pair_list(
    pairs: PairList,
    model,
    data_dir,
    *,
    weights=None,
    landmarks="auto",
    images_dir=None,
    protocol: str = "sphereface",
    out_dir=None,
    skip_missing: bool = False,
    embedding: EmbeddingOptions | None = None,
    show: bool = True,
    fars=DEFAULT_FARS,
    dataset: str | None = None,
    command: str | None = None,
) -> dict:
    """K-fold verification of a parsed pair list. See `evaluate_pairs` for the arguments.

    Args:
        embedding: EmbeddingOptions or None. Alignment, preprocessing, batch size, cache, progress.
    """
    started = time.perf_counter()
    opts = embedding or EmbeddingOptions()
    protocol_spec = get_protocol(protocol)
    source = make_source(data_dir, landmarks, images_dir, opts.template, opts.crop_size, opts.interpolation)
    pairs, skipped = _check_pairs_available(pairs, source, skip_missing)
    paths = pairs.image_paths()
    embedder = _load_checked_embedder(model, weights, opts.preprocess, opts.batch_size, source, paths[0])
    fused = embedder.contract.flip_fusion if embedder.contract is not None else "none"
    if fused != "none" and protocol_spec.needs_flip:
        raise ValueError(f"The export {embedder.name} already fuses each embedding with its mirror's "
                         f"({fused}); evaluate it with --protocol plain. Received: protocol={protocol!r}")
    cache = _resolve_cache(opts.cache_dir, embedder.fingerprint)
    embed_start = time.perf_counter()
    embeddings, flipped, stats = inference.embed_images(
        embedder,
        paths,
        source,
        flip=protocol_spec.needs_flip,
        batch_size=opts.batch_size,
        cache=cache,
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
        model=os.fspath(model) if isinstance(model, (str, os.PathLike)) else embedder.name,
        weights=None if weights is None else os.fspath(weights),
        model_fingerprint=embedder.fingerprint,
        preprocess=embedder.preprocess,
        crops=source.describe()
        + ("" if source.landmarks is not None else f":{source.size[0]}x{source.size[1]}"),
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
        from keras_sphereface.evaluation.plots import plot_roc, plot_score_histograms

        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        title = f"{report['dataset']} ({protocol_spec.name} protocol)"
        plot_roc(summary, out / "roc.png", title=f"ROC: {title}")
        plot_score_histograms(
            result.scores,
            result.same,
            result.mean_threshold,
            out / "scores_hist.png",
            title=f"Held-out cosine scores: {title}",
        )
        report["wall_seconds"] = round(time.perf_counter() - started, 2)
        write_json(report, out / "report.json")
    if show:
        print_verification_table(report)
    return report


def evaluate_pairs(
    pairs_file,
    model,
    data_dir,
    weights=None,
    landmarks="auto",
    images_dir=None,
    protocol: str = "sphereface",
    out_dir=None,
    skip_missing: bool = False,
    fmt: str = "auto",
    num_folds: int = 10,
    **kwargs,
) -> dict:
    """Verification on any pair list (LFW format or `path1 path2 same [fold]` lines).

    Args:
        pairs_file: str or path-like. The pair list (see `keras_sphereface.evaluation.pairs`).
        model: str, path-like or `keras.Model`. Zoo name, `.keras` file, SavedModel directory or model.
        data_dir: str or path-like. Dataset folder; pair paths are relative to `<data>/images` when
            that folder exists, else to `<data>`.
        weights: None or str. Weights of a zoo model (`"casia"`, a file, or None for random).
        landmarks: `"auto"`, None or a path. See `make_source`.
        images_dir: str, path-like or None. Overrides the image folder.
        protocol: str. `"sphereface"`, `"summed"` or `"plain"`.
        out_dir: str, path-like or None. Where `report.json`, `roc.png` and `scores_hist.png` go.
        skip_missing: bool. Evaluate the pairs whose images exist (and have landmarks) and report
            how many were skipped, instead of failing on the first missing image.
        fmt: str. Pair list format: `"auto"`, `"lfw"` or `"generic"`.
        num_folds: int. Folds to form when the file gives none.
        **kwargs: `template`, `crop_size`, `interpolation`, `preprocess`, `batch_size`, `cache_dir`
            (None: the default cache, False: none), `progress`, `show`, `fars`, `dataset`, `command`.

    Returns:
        The report dict (also written to `out_dir/report.json`).
    """
    pairs = read_pairs(pairs_file, fmt=fmt, num_folds=num_folds)
    embedding = EmbeddingOptions.take_from(kwargs)
    return evaluate_pair_list(
        pairs, model, data_dir, weights=weights, landmarks=landmarks, images_dir=images_dir, protocol=protocol,
        out_dir=out_dir, skip_missing=skip_missing, embedding=embedding, **kwargs,
    )


def evaluate_lfw(
    model,
    data_dir,
    weights=None,
    landmarks="auto",
    protocol: str = "sphereface",
    out_dir=None,
    pairs_file: str = "pairs.txt",
    skip_missing: bool = False,
    **kwargs,
) -> dict:
    """LFW View 2 10-fold verification (`<data>/pairs.txt`), by default under the SphereFace protocol.

    Args:
        model: str, path-like or `keras.Model`. As in `evaluate_pairs`.
        data_dir: str or path-like. The LFW folder (`images/`, `pairs.txt`, `landmarks.txt`).
        weights: None or str. Weights of a zoo model.
        landmarks: `"auto"` (`<data>/landmarks.txt`), None (aligned crops) or a path.
        protocol: str. `"sphereface"`, `"summed"` or `"plain"`.
        out_dir: str, path-like or None. Where the report and plots go.
        pairs_file: str. The pair list, relative to `data_dir` unless absolute (`pairsDevTest.txt`
            for View 1).
        skip_missing: bool. As in `evaluate_pairs`.
        **kwargs: as in `evaluate_pairs`.

    Returns:
        The report dict.
    """
    path = Path(pairs_file)
    if not path.is_absolute():
        path = Path(data_dir) / path
    kwargs.setdefault("dataset", f"LFW {path.name}")
    return evaluate_pairs(
        path,
        model,
        data_dir,
        weights,
        landmarks,
        protocol=protocol,
        out_dir=out_dir,
        skip_missing=skip_missing,
        fmt="lfw",
        **kwargs,
    )


def labelled_images(root: str | os.PathLike, min_images: int = 1) -> tuple[list[str], list[str]]:
    """Lists `<root>/<label>/<image>` files of labels with at least `min_images` images.

    Returns:
        `(paths, labels)`: POSIX paths relative to `root`, sorted, and the label of each.
    """
    root = Path(root)
    paths, labels = [], []
    for folder in sorted(p for p in root.iterdir() if p.is_dir()):
        files = sorted(f for f in folder.iterdir() if f.suffix.lower() in IMAGE_EXTENSIONS and f.is_file())
        if len(files) >= min_images:
            paths.extend(f.relative_to(root).as_posix() for f in files)
            labels.extend(folder.name for _ in files)
    return paths, labels


def _labelled_source(data_dir, landmarks, images_dir, template, crop_size, interpolation, min_images,
                     records):
    """`(source, paths, labels)` of a labelled folder or of the TFRecords in it."""
    files = sorted(p for p in Path(data_dir).glob(records) if p.is_file()) if images_dir is None else []
    if not files:
        source = make_source(data_dir, landmarks, images_dir, template, crop_size, interpolation)
        paths, labels = labelled_images(source.root, min_images)
        return source, paths, labels
    from keras_sphereface.data.record_source import RecordSource, read_face_records

    keys, identities, images, points = read_face_records(files)
    counts = Counter(identities)
    chosen = [(k, i) for k, i in zip(keys, identities, strict=True) if counts[i] >= min_images]
    size = tuple(crop_size) if crop_size is not None else template_size(template)
    source = RecordSource(Path(data_dir), points or None, template, size, interpolation,
                                    images=images)
    return source, [k for k, _ in chosen], [i for _, i in chosen]


def angular_fisher_score_of_folder(
    model,
    data_dir,
    weights=None,
    landmarks="auto",
    images_dir=None,
    min_images: int = 10,
    records: str = "*.tfrecord",
    flip: str = "none",
    skip_missing: bool = False,
    out_dir=None,
    template: str = "sphereface",
    crop_size=None,
    interpolation: str = "bilinear",
    preprocess: str | None = None,
    batch_size: int = 64,
    cache_dir=None,
    progress: bool = True,
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
        landmarks: `"auto"`, None or a path. See `make_source`.
        images_dir: str, path-like or None. Overrides the image folder.
        min_images: int. Only identities with at least this many images count.
        records: str. Glob pattern of TFRecord files inside `data_dir`.
        flip: str. `"none"` (one embedding per image), `"concat"` or `"sum"` with the mirror's.
        skip_missing: bool. Leave out images without landmarks instead of failing.
        out_dir: str, path-like or None. Where `afs.json` goes.
        template, crop_size, interpolation, preprocess, batch_size, cache_dir, progress: as in
            `evaluate_pairs`.
        show: bool. Print the result.
        command: str or None. Recorded in the report.

    Returns:
        dict with `angular_fisher_score`, `identities`, `images` and the run's settings.
    """
    started = time.perf_counter()
    if min_images < 2:
        raise ValueError(f"min_images must be at least 2. Received: min_images={min_images}")
    source, paths, labels = _labelled_source(data_dir, landmarks, images_dir, template, crop_size,
                                             interpolation, min_images, records)
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
    embedder = _load_checked_embedder(model, weights, preprocess, batch_size, source, paths[0])
    cache = _resolve_cache(cache_dir, embedder.fingerprint)
    embeddings, flipped, stats = inference.embed_images(
        embedder,
        paths,
        source,
        flip=flip != "none",
        batch_size=batch_size,
        cache=cache,
        progress=progress,
    )
    features = combine_flip(embeddings, flipped, flip)
    score = angular_fisher_score(features, np.asarray(labels))
    report = {
        "angular_fisher_score": score,
        "identities": len(set(labels)),
        "images": len(paths),
        "min_images": min_images,
        "skipped_images": len(missing),
        "flip": flip,
        "model": os.fspath(model) if isinstance(model, (str, os.PathLike)) else embedder.name,
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
