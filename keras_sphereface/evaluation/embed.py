"""Batched embedding of face images through a Keras model or a SavedModel, with an on-disk cache.

- `Embedder` wraps a model: its input size, its preprocessing and a fingerprint of its weights.
- `FaceSource` turns an image path into the crop the model sees: read, decode (RGB), align with
  5 landmarks when a landmark file is given (else the images must already be aligned crops).
- `embed_images` embeds images (and their horizontal mirrors) in batches with a progress bar,
  reading and writing an `EmbeddingCache` keyed by (model fingerprint, image content + landmarks +
  alignment settings + preprocessing, mirror), so another protocol or a re-run reuses the vectors.
"""

from __future__ import annotations

import dataclasses
import hashlib
import inspect
import json
import os
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

from keras_sphereface.utils.atomic import atomic_path

PIXEL_MEAN = 127.5
PIXEL_SCALE = 128.0

#: Named preprocessing functions `uint8 RGB (batch, h, w, 3) -> float32`.
PREPROCESSING: dict[str, Callable[[np.ndarray], np.ndarray]] = {
    "ksf": lambda x: (x.astype(np.float32) - np.float32(PIXEL_MEAN)) / np.float32(PIXEL_SCALE),
    "none": lambda x: x.astype(np.float32),
    "unit": lambda x: x.astype(np.float32) / np.float32(255.0),
}


def default_cache_dir() -> Path:
    """`<home>/cache/embeddings`, home being `$KERAS_SPHEREFACE_HOME` as for weights."""
    from keras_sphereface.models.weights import weights_home

    return weights_home() / "cache" / "embeddings"


class Embedder:
    """A face-embedding model with its input size, preprocessing and fingerprint.

    Args:
        predict: callable. Maps a float32 batch `(batch_size, height, width, 3)` (already
            preprocessed) to embeddings `(batch_size, dim)`.
        input_size: tuple of 2 ints. The `(height, width)` the model takes.
        fingerprint: str. Hex digest identifying the model's architecture and weights.
        preprocess: str. A key of `PREPROCESSING` (`"ksf"` is `(x - 127.5) / 128`).
        name: str. For reports.
    """

    def __init__(
        self,
        predict: Callable,
        input_size: tuple[int, int],
        fingerprint: str,
        preprocess: str = "ksf",
        name: str = "model",
    ):
        if preprocess not in PREPROCESSING:
            raise ValueError(
                f"Unknown preprocessing; expected one of {sorted(PREPROCESSING)}. "
                f"Received: preprocess={preprocess!r}"
            )
        self._predict = predict
        self.input_size = tuple(int(v) for v in input_size)
        self.fingerprint = fingerprint
        self.preprocess = preprocess
        self.name = name

    def __call__(self, images: np.ndarray) -> np.ndarray:
        """Embeds aligned RGB `uint8` faces `(batch, height, width, 3)` into float32 `(batch, dim)`."""
        images = np.asarray(images)
        if images.ndim != 4 or tuple(images.shape[1:3]) != self.input_size:
            raise ValueError(
                f"{self.name} takes images of size {self.input_size} (height, width). "
                f"Received: images.shape={images.shape}"
            )
        out = self._predict(PREPROCESSING[self.preprocess](images))
        out = np.asarray(out, dtype=np.float32)
        return out.reshape(out.shape[0], -1)


def _keras_fingerprint(model) -> str:
    digest = hashlib.sha256()
    digest.update(
        json.dumps(
            [
                model.__class__.__name__,
                str(model.input_shape),
                str(model.output_shape),
                [layer.__class__.__name__ for layer in model.layers],
            ]
        ).encode()
    )
    for weight in model.weights:
        value = np.ascontiguousarray(np.asarray(weight.numpy()))
        digest.update(f"{value.dtype}{value.shape}".encode())
        digest.update(value.tobytes())
    return digest.hexdigest()


def _directory_fingerprint(path: Path) -> str:
    digest = hashlib.sha256()
    for file in sorted(p for p in path.rglob("*") if p.is_file()):
        digest.update(str(file.relative_to(path).as_posix()).encode())
        digest.update(file.read_bytes())
    return digest.hexdigest()


def keras_embedder(model, preprocess: str = "ksf", batch_size: int = 64) -> Embedder:
    """Wraps a Keras model that maps `(batch, height, width, 3)` to `(batch, dim)` embeddings.

    Batches are padded to `batch_size` so the compiled predict function is traced once.

    Args:
        model: `keras.Model`. Its input must be `(None, height, width, 3)`.
        preprocess: str. A key of `PREPROCESSING`.
        batch_size: int. The padded batch size.
    """
    shape = model.input_shape
    if (
        isinstance(shape, list)
        or len(shape) != 4
        or shape[1] is None
        or shape[2] is None
        or shape[3] != 3
    ):
        raise ValueError(
            f"An embedding model needs one input of shape (None, height, width, 3) with a "
            f"known size. Received: input_shape={shape}"
        )

    def predict(x):
        count = x.shape[0]
        if count < batch_size:
            x = np.concatenate([x, np.zeros((batch_size - count, *x.shape[1:]), x.dtype)])
        return np.asarray(model.predict_on_batch(x))[:count]

    return Embedder(
        predict,
        (shape[1], shape[2]),
        _keras_fingerprint(model),
        preprocess,
        name=getattr(model, "name", "model"),
    )


def _zoo_builders() -> dict:
    """Lower-case name -> builder for the public model builders that need nothing but `weights`."""
    from keras_sphereface import models

    builders = {}
    for attr in dir(models):
        value = getattr(models, attr)
        if attr[:1].isupper() and inspect.isfunction(value):
            required = [p for p in inspect.signature(value).parameters.values()
                        if p.default is inspect.Parameter.empty and p.kind is not p.VAR_KEYWORD]
            if all(p.name == "weights" for p in required):
                builders[attr.lower()] = value
    return builders


def _find_zoo_builder(name: str):
    builders = _zoo_builders()
    if name.lower() in builders:
        return builders[name.lower()]
    names = ", ".join(sorted(b.__name__ for b in builders.values())) or "none available"
    raise ValueError(f"{name!r} is neither a model file, a SavedModel directory nor a model of the zoo "
                     f"({names}). Received: model={name!r}")


def load_embedder(model, weights=None, preprocess: str | None = None, batch_size: int = 64) -> Embedder:
    """Loads an embedding model from the zoo, a `.keras` file, a SavedModel directory or a Keras model.

    Args:
        model: str, path-like or `keras.Model`. A zoo name (`"mobilefacenet"`, `"sphere20"`,
            case-insensitive), a `.keras` / `.h5` file, a SavedModel directory, or a model.
        weights: None or str. For zoo models: `None` (random), a named source (`"casia"`) or a
            weights file. Must be None for files and directories, which hold their weights.
        preprocess: str or None. A key of `PREPROCESSING`; None means `"ksf"` (`(x - 127.5) / 128`,
            what every zoo model expects).
        batch_size: int. Images per forward pass.

    Returns:
        An `Embedder`.
    """
    preprocess = preprocess or "ksf"
    if not isinstance(model, (str, os.PathLike)):
        return keras_embedder(model, preprocess, batch_size)
    path = Path(model)
    if path.is_dir():
        if weights is not None:
            raise ValueError(
                f"A SavedModel directory holds its own weights. Received: weights={weights!r}"
            )
        from keras_sphereface.evaluation.savedmodel import savedmodel_embedder

        return savedmodel_embedder(path, preprocess, _directory_fingerprint(path))
    if path.suffix in (".keras", ".h5") or path.is_file():
        if not path.is_file():
            raise FileNotFoundError(f"Model file not found. Received: model={str(model)!r}")
        if weights is not None:
            raise ValueError(f"A model file holds its own weights. Received: weights={weights!r}")
        import keras

        import keras_sphereface.layers
        import keras_sphereface.models  # noqa: F401

        loaded = keras.saving.load_model(path, compile=False)
        return keras_embedder(loaded, preprocess, batch_size)
    builder = _find_zoo_builder(str(model))
    built = builder(weights=weights)
    return keras_embedder(built, preprocess, batch_size)


@dataclasses.dataclass
class FaceSource:
    """Where images come from and how they become crops.

    Attributes:
        root: Path. Image paths are relative to it.
        landmarks: dict or None. Relative path -> `(5, 2)` points; None when the images are
            already aligned crops.
        template: str. Alignment template (`"sphereface"`, `"arcface"`).
        size: tuple of 2 ints. Crop `(height, width)`.
        interpolation: str. Warp interpolation (`"bilinear"`).
    """

    root: Path
    landmarks: dict | None = None
    template: str = "sphereface"
    size: tuple[int, int] = (112, 96)
    interpolation: str = "bilinear"

    def describe(self) -> str:
        """A string identifying the crop settings (part of every cache key)."""
        if self.landmarks is None:
            return "prealigned"
        return f"align:{self.template}:{self.size[0]}x{self.size[1]}:{self.interpolation}"

    def check_available(self, path: str) -> str | None:
        """Returns why `path` cannot be used (missing file or landmarks), or None."""
        if not (self.root / path).is_file():
            return f"image file not found: {self.root / path}"
        if self.landmarks is not None and path not in self.landmarks:
            return f"no landmarks for {path}"
        return None

    def load_bytes(self, path: str) -> bytes:
        """Returns the encoded image `path`."""
        return (self.root / path).read_bytes()

    def read(self, path: str) -> tuple[bytes, str]:
        """Returns the encoded image and its content key (image digest + crop settings)."""
        data = self.load_bytes(path)
        digest = hashlib.sha256(data)
        digest.update(self.describe().encode())
        if self.landmarks is not None:
            digest.update(np.asarray(self.landmarks[path], dtype=np.float32).tobytes())
        return data, digest.hexdigest()

    def crop(self, path: str, data: bytes) -> np.ndarray:
        """Decodes `data` (the bytes of `path`) and returns the aligned `uint8` RGB crop."""
        from keras_sphereface.data.images import decode_image_rgb

        image = decode_image_rgb(data, source=self.root / path)
        if self.landmarks is None:
            if tuple(image.shape[:2]) != tuple(self.size):
                raise ValueError(
                    f"{self.root / path}: without landmarks the images must be aligned crops of "
                    f"size {tuple(self.size)} (height, width). Received: shape={image.shape}"
                )
            return image
        from keras_sphereface.data.align import align_face

        return align_face(
            image,
            self.landmarks[path],
            template=self.template,
            size=tuple(self.size),
            interpolation=self.interpolation,
        )


class EmbeddingCache:
    """Embeddings on disk, one `.npz` file per model fingerprint, written atomically.

    Keys are hex digests of (image content key, preprocessing, mirror flag); see `entry_key`.

    Args:
        directory: str or path-like. Where the cache files live.
        fingerprint: str. The model fingerprint (the file name).
    """

    def __init__(self, directory: str | os.PathLike, fingerprint: str):
        self.path = Path(directory) / f"{fingerprint[:32]}.npz"
        self.fingerprint = fingerprint
        self.entries: dict[str, np.ndarray] = {}
        self._dirty = False
        if self.path.is_file():
            try:
                with np.load(self.path, allow_pickle=False) as stored:
                    if str(stored["fingerprint"]) == fingerprint:
                        keys, vectors = stored["keys"].tolist(), stored["vectors"]
                        self.entries = dict(zip(keys, vectors, strict=True))
            except (OSError, ValueError, KeyError):
                self.entries = {}  # an unreadable cache is rebuilt, never trusted

    @staticmethod
    def entry_key(content_key: str, preprocess: str, flipped: bool) -> str:
        """The cache key of one embedding."""
        return hashlib.sha256(f"{content_key}|{preprocess}|{int(flipped)}".encode()).hexdigest()

    def get(self, key: str) -> np.ndarray | None:
        return self.entries.get(key)

    def put(self, key: str, vector: np.ndarray) -> None:
        self.entries[key] = np.asarray(vector, dtype=np.float32)
        self._dirty = True

    def save(self) -> None:
        """Writes the cache file (atomically) if anything was added."""
        if not self._dirty or not self.entries:
            return
        keys = list(self.entries)
        with atomic_path(self.path) as tmp, open(tmp, "wb") as handle:
            np.savez(
                handle,
                fingerprint=np.asarray(self.fingerprint),
                keys=np.asarray(keys),
                vectors=np.stack([self.entries[k] for k in keys]),
            )
        self._dirty = False


@dataclasses.dataclass
class EmbeddingStats:
    """How an embedding run went: images, forward passes and cache hits."""

    images: int = 0
    computed: int = 0
    cached: int = 0


def _progress(enabled: bool):
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    return Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeRemainingColumn(),
        disable=not enabled,
        transient=False,
    )


def embed_images(
    embedder: Embedder,
    paths: Sequence[str],
    source: FaceSource,
    flip: bool = True,
    batch_size: int = 64,
    cache: EmbeddingCache | None = None,
    progress: bool = True,
    workers: int = 2,
) -> tuple[np.ndarray, np.ndarray | None, EmbeddingStats]:
    """Embeds images (and their horizontal mirrors) in batches.

    Args:
        embedder: `Embedder`.
        paths: sequence of str. Image paths relative to `source.root`.
        source: `FaceSource`. How to read and crop the images; its crop size must equal the
            model's input size (checked before anything is read).
        flip: bool. Also embed the mirrored crops.
        batch_size: int. Images per forward pass.
        cache: `EmbeddingCache` or None.
        progress: bool. Show a rich progress bar.
        workers: int. Threads that read, decode and align images.

    Returns:
        `(embeddings, flipped, stats)`: float32 `(num_images, dim)`, the mirrors' embeddings
        (or None when `flip` is False) and an `EmbeddingStats`.
    """
    check_input_size(embedder, source)
    paths = list(paths)
    if not paths:
        raise ValueError("No images to embed. Received: paths=[]")
    variants = (False, True) if flip else (False,)
    results: dict[tuple[int, bool], np.ndarray] = {}
    stats = EmbeddingStats(images=len(paths))
    with ThreadPoolExecutor(max(1, workers)) as pool, _progress(progress) as bar:
        task = bar.add_task(f"Embedding {len(paths)} images", total=len(paths))
        for start in range(0, len(paths), batch_size):
            chunk = list(range(start, min(start + batch_size, len(paths))))
            read = list(pool.map(lambda i: source.read(paths[i]), chunk))
            keys = {
                (i, f): EmbeddingCache.entry_key(read[n][1], embedder.preprocess, f)
                for n, i in enumerate(chunk)
                for f in variants
            }
            todo = []
            for n, i in enumerate(chunk):
                hits = {f: cache.get(keys[i, f]) if cache is not None else None for f in variants}
                if all(v is not None for v in hits.values()):
                    results.update({(i, f): v for f, v in hits.items()})
                    stats.cached += 1
                else:
                    todo.append(n)
            if todo:
                jobs = [(paths[chunk[n]], read[n][0]) for n in todo]
                crops = np.stack(list(pool.map(lambda job: source.crop(*job), jobs)))
                for f in variants:
                    vectors = embedder(crops[:, :, ::-1] if f else crops)
                    for n, vector in zip(todo, vectors, strict=True):
                        results[chunk[n], f] = vector
                        if cache is not None:
                            cache.put(keys[chunk[n], f], vector)
                stats.computed += len(todo)
            bar.advance(task, len(chunk))
    if cache is not None:
        cache.save()
    embeddings = np.stack([results[i, False] for i in range(len(paths))])
    flipped = np.stack([results[i, True] for i in range(len(paths))]) if flip else None
    return embeddings, flipped, stats


def check_input_size(embedder: Embedder, source: FaceSource) -> None:
    """Raises a `ValueError` when the crops `source` makes do not have the model's input size."""
    if tuple(source.size) != tuple(embedder.input_size):
        raise ValueError(
            f"{embedder.name} takes {embedder.input_size[0]}x{embedder.input_size[1]} (height x width) "
            f"inputs, but the faces are cropped to {source.size[0]}x{source.size[1]} "
            f"({source.describe()}). Choose a matching template/crop size or model. "
            f"Received: model input size={tuple(embedder.input_size)}, crop size={tuple(source.size)}"
        )
