"""Image files -> embeddings and pair verification: the library behind `ksf embed` and `ksf verify`.

- `open_face_model`: a zoo name, `.keras` file or export folder -> `FaceModel` (embedder, input size,
  alignment template, and for exports the preprocessing contract with its threshold).
- `collect_images`: files and folders (searched recursively for JPEG/PNG) -> image paths.
- `FacePreparer`: one image file -> the aligned `uint8` crop the model takes, by one of three routes
  (`ALIGN_MODES`): `"aligned"` (the file is the crop), `"landmarks"` (5 points from a landmark file),
  `"detect"` (MTCNN, the optional `mtcnn` package).
- `embed_files`: every image -> one row, in input order; images without a usable face keep their row
  (NaN values) with the reason, never dropped. `write_embeddings`: `.npy` (+ `.index.tsv`), `.csv`, `.npz`.
- `verify_pair`: the cosine of two faces and same/different at a threshold whose origin is stated.

Embeddings are L2-normalized float32 (exports already return unit vectors; zoo models are normalized here).
"""

from __future__ import annotations

import csv
import dataclasses
import io
import os
from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np

from keras_sphereface.data.align_folder import list_images
from keras_sphereface.data.face_source import ALIGN_MODES
from keras_sphereface.data.images import IMAGE_EXTENSIONS
from keras_sphereface.inference.contract import (
    Contract,
    ContractError,
    is_export_dir,
    read_contract,
    resolve_export_dir,
)
from keras_sphereface.utils.atomic import atomic_path, atomic_write
from keras_sphereface.utils.vectors import l2_normalize_rows

#: How an image file becomes a crop.
#: Formats `write_embeddings` writes, by file suffix.
OUTPUT_SUFFIXES = (".npy", ".csv", ".npz")


class FaceError(ValueError):
    """One image cannot be turned into a face crop (unreadable, no face, no landmarks, wrong size)."""


@dataclasses.dataclass
class FaceModel:
    """An embedding model with what `ksf embed` / `ksf verify` need to know about it.

    Attributes:
        embedder: `keras_sphereface.inference.Embedder`. uint8 crops `(batch, H, W, 3)` -> `(batch, D)`.
        input_size: tuple of 2 ints. `(height, width)` of the crops.
        template: str. Alignment template name (`keras_sphereface.data.align.TEMPLATES`).
        contract: `Contract` or None. The export's contract (None for zoo models and `.keras` files).
        description: str. What was loaded, for messages.
    """

    embedder: object
    input_size: tuple[int, int]
    template: str
    contract: Contract | None
    description: str

    def check_crop(self, shape: tuple[int, ...], what: str) -> None:
        """Raises `FaceError` unless a crop of `shape` `(H, W, 3)` fits the model (the contract when there is one)."""
        try:
            if self.contract is not None:
                self.contract.check_image_size(shape, what)
            elif tuple(shape[:2]) != tuple(self.input_size):
                raise ContractError(
                    f"{what} is {shape[0]}x{shape[1]} (height x width), but {self.description} takes aligned "
                    f"{self.input_size[0]}x{self.input_size[1]} crops. Align the face first (--landmarks or "
                    f"--detect). Received: shape={tuple(shape)}"
                )
        except ContractError as error:
            raise FaceError(str(error)) from error


def open_face_model(model, weights: str | None = None, batch_size: int = 32) -> FaceModel:
    """Loads a model for `embed_files` / `verify_pair`.

    Args:
        model: str, path-like or `keras.Model`. A zoo name (`keras_sphereface.models.zoo.MODEL_NAMES`),
            a `.keras` file, an export folder of `ksf export --format savedmodel` (`OUT/<name>/<version>`,
            or `OUT/<name>` for its highest version), or a model.
        weights: str or None. Zoo models only (`"casia"`, a file, or None for random).
        batch_size: int. Images per forward pass.

    Returns:
        A `FaceModel`.

    Raises:
        ContractError: an export without (valid) contract, or not a SavedModel export.
        ValueError, FileNotFoundError: unknown model, weights with a file, missing path.
    """
    from keras_sphereface.data.align import template_for_size
    from keras_sphereface.inference.load import load_embedder

    if isinstance(model, (str, os.PathLike)) and Path(model).is_dir():
        if not is_export_dir(model):
            raise ContractError(f"{model} is a folder but not an export of `ksf export`. "
                                f"Received: model={str(model)!r}")
        directory = resolve_export_dir(model)
        contract = read_contract(directory)
        if contract.format != "savedmodel" or not (directory / "saved_model.pb").is_file():
            raise ContractError(
                f"{directory} is a {contract.format} export; `ksf embed` / `ksf verify` run SavedModel exports "
                f"(ksf export --format savedmodel). Received: model={str(model)!r}"
            )
        if weights is not None:
            raise ValueError(f"An export holds its own weights. Received: weights={weights!r}")
        embedder = load_embedder(str(directory), preprocess=contract.embedder_preprocess, batch_size=batch_size)
        return FaceModel(embedder, tuple(contract.input_size), contract.alignment_template, contract,
                         f"the export {directory} ({contract.model_name})")
    embedder = load_embedder(model, weights=weights, batch_size=batch_size)
    size = tuple(embedder.input_size)
    name = model if isinstance(model, (str, os.PathLike)) else getattr(model, "name", "model")
    return FaceModel(embedder, size, template_for_size(size), None, f"model {name}")


def collect_images(inputs: Iterable[str | os.PathLike]) -> list[Path]:
    """Image paths from files and folders (folders searched as `ksf align` searches them: recursively for
    `IMAGE_EXTENSIONS`, following symbolic links once, hidden names skipped; sorted).

    Files are kept whatever their suffix (so an unreadable one is reported, not skipped).

    Raises:
        FileNotFoundError: an input does not exist.
        ValueError: no images at all.
    """
    paths: list[Path] = []
    for item in inputs:
        path = Path(item)
        if path.is_dir():
            paths.extend(path / relative for relative in list_images(path))
        elif path.is_file():
            paths.append(path)
        else:
            raise FileNotFoundError(f"Image or folder not found. Received: {str(path)!r}")
    if not paths:
        raise ValueError(f"No images ({', '.join(IMAGE_EXTENSIONS)}) found. "
                         f"Received: inputs={[str(i) for i in inputs]}")
    return paths


class LandmarkLookup:
    """Finds an image's 5 landmarks in a landmark file whose keys are paths relative to some folder.

    An image path matches the key it ends with (`.../lfw/images/A/A_0001.jpg` matches `A/A_0001.jpg`);
    when several keys match, the longest wins.

    Args:
        path: str or path-like. A landmark file (`keras_sphereface.data.read_landmarks` format).
    """

    def __init__(self, path: str | os.PathLike):
        from keras_sphereface.data.landmarks import read_landmarks

        self.path = Path(path)
        self.points = read_landmarks(self.path)
        self._by_name: dict[str, list[str]] = {}
        for key in self.points:
            self._by_name.setdefault(Path(key).name, []).append(key)

    def find(self, image: str | os.PathLike) -> np.ndarray | None:
        """The `(5, 2)` float32 points of `image`, or None when the file has none for it."""
        text = Path(os.path.abspath(image)).as_posix()
        matches = [k for k in self._by_name.get(Path(image).name, []) if text == k or text.endswith("/" + k)]
        return self.points[max(matches, key=len)] if matches else None


class FacePreparer:
    """Turns image files into aligned crops for a `FaceModel`.

    Args:
        face_model: `FaceModel`. Gives the crop size and template (and the contract to check against).
        align: str. One of `ALIGN_MODES`.
        landmarks: str, path-like or None. The landmark file (required for `"landmarks"`).
        detector: object or None. A `keras_sphereface.data.detect.FaceDetector` (or anything with its
            `landmarks(image)` method); None builds MTCNN on first use for `"detect"`.
    """

    def __init__(self, face_model: FaceModel, align: str = "aligned", landmarks=None, detector=None):
        if align not in ALIGN_MODES:
            raise ValueError(f"align must be one of {list(ALIGN_MODES)}. Received: align={align!r}")
        if align == "landmarks" and landmarks is None:
            raise ValueError("align='landmarks' needs a landmark file. Received: landmarks=None")
        self.face_model = face_model
        self.align = align
        self.lookup = LandmarkLookup(landmarks) if align == "landmarks" else None
        self._detector = detector

    def _points(self, path: Path, image: np.ndarray) -> np.ndarray:
        if self.lookup is not None:
            points = self.lookup.find(path)
            if points is None:
                raise FaceError(f"{path}: no landmarks for this image in {self.lookup.path}")
            return points
        if self._detector is None:
            from keras_sphereface.data.detect import FaceDetector

            self._detector = FaceDetector()
        points, _ = self._detector.landmarks(image)
        if points is None:
            raise FaceError(f"{path}: no face found by the face detector (MTCNN)")
        return points

    def crop(self, path: str | os.PathLike) -> np.ndarray:
        """The aligned RGB `uint8 (H, W, 3)` crop of the image file `path`.

        Raises:
            FaceError: unreadable image, no landmarks / no face, or (for `"aligned"`) a wrong size.
        """
        from keras_sphereface.data.align import align_face
        from keras_sphereface.data.images import load_image_rgb

        path = Path(path)
        try:
            image = load_image_rgb(path)
        except (OSError, ValueError) as error:
            raise FaceError(f"{path}: unreadable image ({error})") from error
        if self.align == "aligned":
            self.face_model.check_crop(image.shape, f"{path} (--aligned)")
            return image
        size = tuple(self.face_model.input_size)
        return align_face(image, self._points(path, image), template=self.face_model.template, size=size)


@dataclasses.dataclass
class EmbeddingTable:
    """One row per input image, in input order.

    Attributes:
        paths: list of str. The image paths as given / found.
        embeddings: float32 `(num_images, D)`. Unit-norm rows; NaN rows where `errors` is set.
        errors: list of (str or None). Why an image has no embedding, None when it has one.
        model: str. What embedded them.
    """

    paths: list[str]
    embeddings: np.ndarray
    errors: list[str | None]
    model: str = ""

    @property
    def ok(self) -> np.ndarray:
        """bool `(num_images,)`: which rows hold an embedding."""
        return np.array([e is None for e in self.errors], dtype=bool)

    @property
    def failures(self) -> list[tuple[str, str]]:
        """`(path, reason)` of every image without an embedding."""
        return [(p, e) for p, e in zip(self.paths, self.errors, strict=True) if e is not None]

    def status(self) -> list[str]:
        """`"ok"` or the reason, per row."""
        return ["ok" if e is None else e for e in self.errors]


def embed_crops(face_model: FaceModel, crops: np.ndarray, batch_size: int = 32) -> np.ndarray:
    """L2-normalized float32 `(n, D)` embeddings of aligned `uint8 (n, H, W, 3)` crops."""
    parts = [face_model.embedder(crops[i:i + batch_size]) for i in range(0, len(crops), batch_size)]
    return l2_normalize_rows(np.concatenate(parts).astype(np.float32, copy=False))


def embed_files(
    inputs: Sequence[str | os.PathLike],
    model,
    weights: str | None = None,
    align: str = "aligned",
    landmarks=None,
    batch_size: int = 32,
    detector=None,
    face_model: FaceModel | None = None,
) -> EmbeddingTable:
    """Embeds image files (and the images in folders), one row per image.

    Args:
        inputs: sequence of str or path-like. Image files and/or folders (see `collect_images`).
        model: str, path-like or `keras.Model`. See `open_face_model`; ignored when `face_model` is given.
        weights: str or None. Zoo models only.
        align: str. `"aligned"`, `"landmarks"` or `"detect"` (see `FacePreparer`).
        landmarks: str, path-like or None. Landmark file for `align="landmarks"`.
        batch_size: int. Images per forward pass.
        detector: object or None. A face detector for `align="detect"` (default: MTCNN).
        face_model: `FaceModel` or None. An already opened model.

    Returns:
        An `EmbeddingTable`; images that fail keep a NaN row and their reason.

    Raises:
        FileNotFoundError, ValueError, ContractError: missing inputs, no images, bad model (not per image).
    """
    paths = collect_images(inputs)
    face_model = face_model or open_face_model(model, weights, batch_size)
    preparer = FacePreparer(face_model, align, landmarks, detector)
    crops, rows, errors = [], [], [None] * len(paths)
    for index, path in enumerate(paths):
        try:
            crops.append(preparer.crop(path))
            rows.append(index)
        except FaceError as error:
            errors[index] = str(error)
    dim = None
    if crops:
        vectors = embed_crops(face_model, np.stack(crops), batch_size)
        dim = vectors.shape[1]
    else:
        dim = face_model.contract.embedding_dim if face_model.contract else 0
    embeddings = np.full((len(paths), dim), np.nan, dtype=np.float32)
    if crops:
        embeddings[rows] = vectors
    return EmbeddingTable([str(p) for p in paths], embeddings, errors, face_model.description)


def embeddings_csv(table: EmbeddingTable) -> str:
    """CSV text: header `path,status,e0,...`, one row per image (empty values where there is no embedding)."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(["path", "status", *(f"e{i}" for i in range(table.embeddings.shape[1]))])
    for path, status, ok, row in zip(table.paths, table.status(), table.ok, table.embeddings, strict=True):
        writer.writerow([path, status, *((f"{v:.8g}" for v in row) if ok else [""] * len(row))])
    return buffer.getvalue()


def write_embeddings(table: EmbeddingTable, out: str | os.PathLike) -> list[Path]:
    """Writes `table` atomically; the format follows the suffix of `out`.

    - `.npy`: float32 `(num_images, D)` (NaN rows for failures) and `<stem>.index.tsv` beside it
      (`row`, `path`, `status` per line), since `.npy` holds no strings;
    - `.csv`: `embeddings_csv`;
    - `.npz`: arrays `embeddings`, `paths`, `status`.

    Returns:
        The written paths.
    """
    out = Path(out)
    suffix = out.suffix.lower()
    if suffix not in OUTPUT_SUFFIXES:
        raise ValueError(f"--out must end with {', '.join(OUTPUT_SUFFIXES)}. Received: out={str(out)!r}")
    if suffix == ".csv":
        with atomic_write(out) as handle:
            handle.write(embeddings_csv(table))
        return [out]
    if suffix == ".npz":
        with atomic_path(out) as tmp:
            np.savez(tmp, embeddings=table.embeddings, paths=np.asarray(table.paths), status=np.asarray(table.status()))
        return [out]
    index = out.with_name(out.stem + ".index.tsv")
    with atomic_path(out) as tmp:
        np.save(tmp, table.embeddings)
    with atomic_write(index) as handle:
        handle.write("row\tpath\tstatus\n")
        for row, (path, status) in enumerate(zip(table.paths, table.status(), strict=True)):
            handle.write(f"{row}\t{path}\t{status}\n")
    return [out, index]


@dataclasses.dataclass(frozen=True)
class PairVerification:
    """The outcome of `verify_pair`.

    Attributes:
        path_a, path_b: str. The two images.
        score: float. Cosine of the two (L2-normalized) embeddings, in `[-1, 1]`.
        threshold: float or None. The threshold used (`same` is `score > threshold`).
        threshold_origin: str. Where the threshold came from (or why there is none).
        same: bool or None. The decision; None without a threshold.
    """

    path_a: str
    path_b: str
    score: float
    threshold: float | None
    threshold_origin: str
    same: bool | None

    def summary(self) -> str:
        """Lines for the terminal: score, decision, threshold and its origin."""
        decision = "unknown (no threshold)" if self.same is None else ("same person" if self.same else
                                                                       "different people")
        return (f"score {self.score:.4f}  ->  {decision}\n"
                f"threshold: {self.threshold_origin}")


def verify_pair(
    image_a: str | os.PathLike,
    image_b: str | os.PathLike,
    model,
    weights: str | None = None,
    align: str = "aligned",
    landmarks=None,
    threshold: float | None = None,
    detector=None,
    face_model: FaceModel | None = None,
) -> PairVerification:
    """Scores two face images and decides same/different.

    The threshold is `threshold` when given, else the export contract's; a zoo model or `.keras` file
    has none unless given (the score is still returned, `same` is None).

    Args:
        image_a, image_b: str or path-like. The two image files.
        model, weights, align, landmarks, detector, face_model: as for `embed_files`.
        threshold: float or None. Overrides the stored threshold.

    Returns:
        A `PairVerification`.

    Raises:
        FaceError: either image has no usable face (the message names it and why).
        ContractError, ValueError, FileNotFoundError: bad model or inputs.
    """
    face_model = face_model or open_face_model(model, weights)
    preparer = FacePreparer(face_model, align, landmarks, detector)
    crops = np.stack([preparer.crop(image_a), preparer.crop(image_b)])
    a, b = embed_crops(face_model, crops)
    score = float(np.clip(np.dot(a.astype(np.float64), b.astype(np.float64)), -1.0, 1.0))
    contract = face_model.contract
    if threshold is not None:
        value, origin = float(threshold), f"{float(threshold):.4f} given on the command line (--threshold)"
    elif contract is not None and contract.threshold is not None:
        value, origin = float(contract.threshold), contract.describe_threshold()
    else:
        value = None
        origin = ("none: the export's contract records no threshold" if contract is not None else
                  f"none: {face_model.description} carries no threshold; pass --threshold or use an export")
    same = None if value is None else bool(score > value)
    return PairVerification(str(image_a), str(image_b), score, value, origin, same)
