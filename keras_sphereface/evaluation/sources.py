"""Where an evaluation's faces come from: its `FaceSource`, the checks before embedding, its embedder.

Every `ksf eval` command (and validation during training) builds its images the same way: the
image folder of a dataset, an alignment mode from `keras_sphereface.data.face_source.ALIGN_MODES`
(or `"auto"`: `"landmarks"` when `<data>/landmarks.txt` exists, else `"aligned"`), the model loaded
and its input size checked against the crops. Cheap checks run before any image is embedded.
"""

from __future__ import annotations

import dataclasses
import os
from collections import Counter
from pathlib import Path

import numpy as np

from keras_sphereface import inference
from keras_sphereface.data.align import template_size
from keras_sphereface.data.face_source import ALIGN_MODES, FaceSource
from keras_sphereface.data.images import IMAGE_EXTENSIONS, decode_image_rgb
from keras_sphereface.data.landmarks import read_landmarks
from keras_sphereface.evaluation.pairs import PairList
from keras_sphereface.utils.types import ModelLike

#: The `align` values of an evaluation: `ALIGN_MODES`, or `"auto"` (landmarks if the data has them).
EVAL_ALIGN_MODES = ("auto", *ALIGN_MODES)

#: The landmark file an evaluation looks for inside its data folder.
LANDMARKS_NAME = "landmarks.txt"


@dataclasses.dataclass(frozen=True)
class EmbeddingOptions:
    """How images become embeddings in an evaluation (the settings every `ksf eval` command shares).

    Attributes:
        align: str. One of `EVAL_ALIGN_MODES`: `"auto"` (landmarks when the landmark file exists,
            else aligned crops), `"aligned"` (the images are crops of the model's input size),
            `"landmarks"` (warp with the landmark file) or `"detect"` (MTCNN finds the landmarks).
        template: str. Alignment template (`"sphereface"` or `"arcface"`).
        crop_size: tuple of 2 ints or None. Crop `(height, width)`; None: the template's native size.
        interpolation: str. Warp interpolation.
        preprocess: str or None. Pixel preprocessing name; None: the model's own.
        batch_size: int. Images per forward pass.
        cache_dir: str, path-like, bool or None. Embedding cache folder; None or True: the default
            cache, False: no cache.
        progress: bool. Show a progress bar.
    """

    align: str = "auto"
    template: str = "sphereface"
    crop_size: tuple[int, int] | None = None
    interpolation: str = "bilinear"
    preprocess: str | None = None
    batch_size: int = 64
    cache_dir: str | os.PathLike | bool | None = None
    progress: bool = True

    def __post_init__(self) -> None:
        if self.align not in EVAL_ALIGN_MODES:
            raise ValueError(f"align must be one of {list(EVAL_ALIGN_MODES)}. Received: align={self.align!r}")


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
    data_dir: str | os.PathLike,
    embedding: EmbeddingOptions | None = None,
    landmarks: str | os.PathLike | None = None,
    images_dir: str | os.PathLike | None = None,
) -> FaceSource:
    """Builds the `FaceSource` of a dataset folder.

    Args:
        data_dir: str or path-like. Dataset folder (e.g. `$KSF_DATA_DIR/lfw`).
        embedding: EmbeddingOptions or None. Its `align`, `template`, `crop_size` and `interpolation`.
        landmarks: str, path-like or None. The landmark file; None: `<data>/landmarks.txt`. Read when
            `align` is `"landmarks"`, or `"auto"` and the file exists.
        images_dir: str, path-like or None. See `image_root`.

    Raises:
        FileNotFoundError: no image folder, or `align="landmarks"` without a landmark file.
    """
    opts = embedding or EmbeddingOptions()
    root = image_root(data_dir, images_dir)
    landmark_file = Path(landmarks) if landmarks is not None else Path(data_dir) / LANDMARKS_NAME
    align = opts.align
    if align == "auto":
        align = "landmarks" if landmarks is not None or landmark_file.is_file() else "aligned"
    if align == "landmarks" and not landmark_file.is_file():
        raise FileNotFoundError(f"align='landmarks' needs a landmark file; {landmark_file} does not exist. "
                                f"Received: landmarks={os.fspath(landmark_file)!r}")
    points = read_landmarks(landmark_file) if align == "landmarks" else None
    size = tuple(opts.crop_size) if opts.crop_size is not None else template_size(opts.template)
    return FaceSource.for_mode(align, root, points, template=opts.template, size=size,
                               interpolation=opts.interpolation)


def check_pairs_available(pairs: PairList, source: FaceSource, skip_missing: bool) -> tuple[PairList, list[dict]]:
    """The pairs whose two images `source` can crop, and one record per pair left out.

    Raises:
        FileNotFoundError: a pair cannot be used and `skip_missing` is False (names the line).
        ValueError: skipping leaves a fold without same or different pairs.
    """
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


def _check_prealigned(source: FaceSource, first_path: str, embedder: inference.Embedder) -> None:
    shape = decode_image_rgb(source.load_bytes(first_path), source=first_path).shape
    if tuple(shape[:2]) != tuple(embedder.input_size):
        raise ValueError(
            f"No landmark file, so the images must be aligned crops of the model's input size "
            f"{tuple(embedder.input_size)} (height, width); {first_path} is {shape[0]}x{shape[1]}. Give "
            f"--landmarks or aligned crops. Received: image shape={tuple(shape)}"
        )


def load_checked_embedder(
    model: ModelLike,
    weights: str | os.PathLike | None,
    embedding: EmbeddingOptions,
    source: FaceSource,
    first_path: str,
) -> inference.Embedder:
    """Loads `model` and checks it takes the crops `source` makes (template, input size).

    Aligned crops take the model's input size; the first image is read to check it has it.
    """
    embedder = inference.load_embedder(model, weights=weights, preprocess=embedding.preprocess,
                                       batch_size=embedding.batch_size)
    contract = embedder.contract
    if contract is not None and source.align != "aligned" and contract.alignment_template != source.template:
        raise ValueError(f"The export {embedder.name} takes faces aligned to the {contract.alignment_template!r} "
                         f"template (its contract); use --template {contract.alignment_template}. "
                         f"Received: template={source.template!r}")
    if source.align == "aligned":
        source.size = tuple(embedder.input_size)
        _check_prealigned(source, first_path, embedder)
    inference.check_input_size(embedder, source)
    return embedder


def model_label(model: ModelLike, embedder: inference.Embedder) -> str:
    """How a report names the model: the name or path given, else the embedder's name."""
    return os.fspath(model) if isinstance(model, (str, os.PathLike)) else embedder.name


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


def labelled_source(
    data_dir: str | os.PathLike,
    embedding: EmbeddingOptions,
    landmarks: str | os.PathLike | None,
    images_dir: str | os.PathLike | None,
    min_images: int,
    records: str,
) -> tuple[FaceSource, list[str], list[str]]:
    """`(source, paths, labels)` of a labelled folder, or of the TFRecords matching `records` in it.

    TFRecords give each example's identity and, when stored, its landmarks (else they are aligned crops).
    """
    files = sorted(p for p in Path(data_dir).glob(records) if p.is_file()) if images_dir is None else []
    if not files:
        source = make_source(data_dir, embedding, landmarks, images_dir)
        paths, labels = labelled_images(source.root, min_images)
        return source, paths, labels
    from keras_sphereface.data.record_source import RecordSource, read_face_records

    keys, identities, images, points = read_face_records(files)
    counts = Counter(identities)
    chosen = [(k, i) for k, i in zip(keys, identities, strict=True) if counts[i] >= min_images]
    size = tuple(embedding.crop_size) if embedding.crop_size is not None else template_size(embedding.template)
    source = RecordSource(Path(data_dir), points or None, embedding.template, size, embedding.interpolation,
                          images=images)
    return source, [k for k, _ in chosen], [i for _, i in chosen]
