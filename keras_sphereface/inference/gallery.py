"""`Gallery`: enrolled face embeddings with identity names and image ids; its on-disk format.

A gallery is a folder, written atomically as a whole (`keras_sphereface.utils.atomic.atomic_path`): a
save that fails, or a load that is refused, leaves what was on disk as it was. No pickle anywhere:

    GALLERY/
      gallery.json     the manifest: FORMAT_NAME, FORMAT_VERSION, the model (`GalleryModel`), storage
                       dtype, row count, dimension, identity names, and the byte size and SHA-256 of
                       each file below
      vectors.npy      (rows, dim) unit embeddings: float32, float16, or bfloat16 bit patterns (uint16)
      labels.npy       int32 (rows,): index of each row's identity in the manifest's `identities`
      image_ids.json   the image id of each row (unique), e.g. "Alice/0001.jpg"

Embeddings of different models are not comparable, so a gallery records the model that made it
(`GalleryModel`) and refuses a model whose identity fields differ (`GalleryModel.IDENTITY_FIELDS`: the
export contract's `model_name`, `input_size`, `embedding_dim`, `alignment_template` and `flip_fusion`,
and the model's weights fingerprint).
"""

from __future__ import annotations

import dataclasses
import datetime
import json
import os
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from keras_sphereface.inference.search import (
    DEFAULT_BLOCK_ROWS,
    STORAGE_NUMPY_DTYPES,
    FaissIndex,
    SearchResult,
    check_storage_dtype,
    exact_search,
    from_storage,
    to_storage,
)
from keras_sphereface.utils.atomic import atomic_path, sha256_file
from keras_sphereface.utils.vectors import l2_normalize_rows
from keras_sphereface.version import __version__

if TYPE_CHECKING:
    from keras_sphereface.inference.embedder import Embedder

#: `format` of the manifest; the file names inside a gallery folder.
FORMAT_NAME = "keras_sphereface.gallery"
FORMAT_VERSION = 1
MANIFEST_NAME = "gallery.json"
VECTORS_NAME = "vectors.npy"
LABELS_NAME = "labels.npy"
IMAGE_IDS_NAME = "image_ids.json"
#: Search backends of `Gallery.search`.
SEARCH_BACKENDS = ("exact", "faiss")


class GalleryError(ValueError):
    """A gallery is missing, truncated, corrupt, of another model, empty, or an operation contradicts it."""


@dataclasses.dataclass(frozen=True)
class GalleryModel:
    """The model whose embeddings a gallery holds.

    Attributes:
        name: str. The export contract's `model_name`, else the Keras model's name.
        fingerprint: str. The embedder's fingerprint (weights digest; for an export, of its files).
        input_size: tuple of 2 ints. `(height, width)` of the crops, in pixels.
        embedding_dim: int or None. Length of an embedding (None while not known).
        alignment_template: str. The crops' alignment template.
        flip_fusion: str. How the export combines an image with its mirror (`"none"` for Keras models).
        preprocess: str. The embedder's preprocessing key (informative, not compared).
    """

    name: str
    fingerprint: str
    input_size: tuple[int, int]
    embedding_dim: int | None
    alignment_template: str
    flip_fusion: str = "none"
    preprocess: str = "ksf"

    #: The fields that must agree for two models' embeddings to be compared.
    IDENTITY_FIELDS = ("name", "input_size", "embedding_dim", "alignment_template", "flip_fusion", "fingerprint")

    @classmethod
    def of_embedder(cls, embedder: Embedder, embedding_dim: int | None = None) -> GalleryModel:
        """The `GalleryModel` of an `Embedder`: its export contract's fields, else the Keras model's."""
        from keras_sphereface.data.align import template_for_size

        contract = embedder.contract
        if contract is not None:
            return cls(contract.model_name, embedder.fingerprint, tuple(contract.input_size),
                       contract.embedding_dim, contract.alignment_template, contract.flip_fusion,
                       embedder.preprocess)
        return cls(embedder.name, embedder.fingerprint, tuple(embedder.input_size), embedding_dim,
                   template_for_size(embedder.input_size), "none", embedder.preprocess)

    def differences(self, other: GalleryModel) -> list[str]:
        """`"field: mine vs other's"` for each identity field that differs (None dims are not compared)."""
        found = []
        for field in self.IDENTITY_FIELDS:
            mine, theirs = getattr(self, field), getattr(other, field)
            if field == "embedding_dim" and (mine is None or theirs is None):
                continue
            if field == "fingerprint" and mine != theirs:
                found.append(f"fingerprint (weights): {mine[:12]}... vs {theirs[:12]}...")
            elif mine != theirs:
                found.append(f"{field}: {mine!r} vs {theirs!r}")
        return found

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready fields."""
        data = dataclasses.asdict(self)
        data["input_size"] = list(self.input_size)
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> GalleryModel:
        """The inverse of `to_dict`."""
        return cls(str(data["name"]), str(data["fingerprint"]), tuple(int(v) for v in data["input_size"]),
                   None if data.get("embedding_dim") is None else int(data["embedding_dim"]),
                   str(data["alignment_template"]), str(data.get("flip_fusion", "none")),
                   str(data.get("preprocess", "ksf")))


class Gallery:
    """Enrolled unit embeddings, one row per image, each with an identity name and a unique image id.

    Args:
        model: `GalleryModel`. The model that makes the embeddings.
        dtype: str. Storage of the rows, one of `STORAGE_DTYPES` (`"float16"` / `"bfloat16"`: half the memory).
    """

    def __init__(self, model: GalleryModel, dtype: str = "float32"):
        self.model = model
        self.dtype = check_storage_dtype(dtype)
        dim = model.embedding_dim or 0
        self._vectors = np.empty((0, dim), dtype=STORAGE_NUMPY_DTYPES[dtype])
        self._labels = np.empty(0, dtype=np.int32)
        self.identities: list[str] = []  # names that `_labels` index
        self.image_ids: list[str] = []
        self._faiss: FaissIndex | None = None

    def __len__(self) -> int:
        return len(self.image_ids)

    @property
    def dim(self) -> int | None:
        """int or None. Embedding length (None before the first embedding of a Keras model)."""
        return self.model.embedding_dim

    @property
    def nbytes(self) -> int:
        """int. Bytes the stored vectors take in memory."""
        return int(self._vectors.nbytes)

    @property
    def row_identities(self) -> list[str]:
        """The identity name of each row."""
        return [self.identities[i] for i in self._labels]

    def vectors(self) -> np.ndarray:
        """float32 `(len(self), dim)`: the stored rows (rounded to the storage dtype)."""
        return from_storage(self._vectors, self.dtype, out=np.empty(self._vectors.shape, np.float32))

    def add(self, vectors: np.ndarray, identities: Sequence[str], image_ids: Sequence[str],
            replace: bool = False) -> int:
        """Enrolls embeddings (L2-normalized here) under their identities and image ids.

        Args:
            vectors: float `(n, dim)`. Finite, non-zero rows.
            identities: sequence of n str. Identity names.
            image_ids: sequence of n str. Unique ids, e.g. the image path relative to the enrolled folder.
            replace: bool. Replace rows whose image id is already enrolled, instead of refusing.

        Returns:
            int. How many enrolled rows were replaced.

        Raises:
            GalleryError: an image id is already enrolled (without `replace`), or repeated in the input.
            ValueError: shapes that disagree, or rows that are not finite and non-zero.
        """
        vectors = np.asarray(vectors, dtype=np.float32)
        identities, image_ids = [str(v) for v in identities], [str(v) for v in image_ids]
        if vectors.ndim != 2 or not len(vectors) == len(identities) == len(image_ids):
            raise ValueError(f"vectors (n, dim), identities and image_ids must have one length n. Received: "
                             f"vectors.shape={vectors.shape}, {len(identities)} identities, {len(image_ids)} ids")
        if self.dim is not None and vectors.shape[1] != self.dim:
            raise GalleryError(f"The gallery holds {self.dim}-d embeddings of {self.model.name}. "
                               f"Received: vectors of dimension {vectors.shape[1]}")
        norms = np.linalg.norm(vectors, axis=1)
        if not (np.isfinite(norms) & (norms > 0)).all():
            raise ValueError(f"Embeddings must be finite and non-zero. Received: "
                             f"{int((~(np.isfinite(norms) & (norms > 0))).sum())} bad rows")
        repeated = sorted(i for i, count in Counter(image_ids).items() if count > 1)
        if repeated:
            raise GalleryError(f"Image ids must be unique; repeated in the input: {repeated[:5]}. "
                               f"Received: {len(image_ids)} ids")
        enrolled = set(self.image_ids).intersection(image_ids)
        if enrolled and not replace:
            shown = sorted(enrolled)[:5]
            raise GalleryError(f"{len(enrolled)} image ids are already enrolled (e.g. {shown}); pass replace=True "
                               f"(ksf enroll --replace) to replace them. Received: image_ids={shown}")
        if enrolled:
            self.remove(image_ids=sorted(enrolled))
        if self.dim is None:
            self.model = dataclasses.replace(self.model, embedding_dim=int(vectors.shape[1]))
        names = {name: i for i, name in enumerate(self.identities)}
        for name in identities:
            if name not in names:
                names[name] = len(self.identities)
                self.identities.append(name)
        stored = to_storage(l2_normalize_rows(vectors), self.dtype)
        self._vectors = np.concatenate([self._vectors.reshape(-1, stored.shape[1]), stored])
        self._labels = np.concatenate([self._labels, np.array([names[n] for n in identities], dtype=np.int32)])
        self.image_ids.extend(image_ids)
        self._faiss = None
        return len(enrolled)

    def remove(self, image_ids: Sequence[str] = (), identities: Sequence[str] = ()) -> int:
        """Removes rows by image id and/or every row of some identities.

        Returns:
            int. Rows removed.

        Raises:
            GalleryError: an image id or identity that is not enrolled (nothing is removed then).
        """
        index = {i: row for row, i in enumerate(self.image_ids)}
        missing = [i for i in image_ids if i not in index] + [n for n in identities if n not in self.identities]
        if missing:
            raise GalleryError(f"Not enrolled: {missing[:5]}. Received: {len(missing)} unknown ids or identities")
        drop = np.zeros(len(self), dtype=bool)
        drop[[index[i] for i in image_ids]] = True
        for name in identities:
            drop |= self._labels == self.identities.index(name)
        keep = ~drop
        self._vectors, self._labels = self._vectors[keep], self._labels[keep]
        self.image_ids = [i for i, kept in zip(self.image_ids, keep, strict=True) if kept]
        used = np.unique(self._labels)
        remap = np.full(len(self.identities), -1, dtype=np.int32)
        remap[used] = np.arange(len(used), dtype=np.int32)
        self.identities = [self.identities[i] for i in used]
        self._labels = remap[self._labels]
        self._faiss = None
        return int(drop.sum())

    def search(self, queries: np.ndarray, k: int = 5, backend: str = "exact", block_rows: int = DEFAULT_BLOCK_ROWS,
               **faiss_options: Any) -> SearchResult:
        """Top-k rows of each unit query `(num_queries, dim)` by cosine (`exact_search` or a `FaissIndex`).

        Args:
            queries: float `(num_queries, dim)`. Unit embeddings of the same model.
            k: int. Results per query.
            backend: str. `"exact"` or `"faiss"` (approximate; built on first use, rebuilt after a change).
            block_rows: int. Rows per matrix product (exact).
            **faiss_options: `FaissIndex` keywords (`factory`, `k_factor`, `threads`).

        Raises:
            GalleryError: the gallery is empty.
            ImportError: `"faiss"` without faiss installed.
        """
        if len(self) == 0:
            raise GalleryError(f"The gallery is empty: enroll faces first (ksf enroll). Received: {len(self)} rows")
        if backend not in SEARCH_BACKENDS:
            raise ValueError(f"backend must be one of {list(SEARCH_BACKENDS)}. Received: backend={backend!r}")
        if backend == "exact":
            return exact_search(self._vectors, queries, k, self.dtype, block_rows)
        if self._faiss is None or faiss_options:
            self._faiss = FaissIndex(self.vectors(), **faiss_options)
        return self._faiss.search(queries, k)

    def save(self, path: str | os.PathLike) -> Path:
        """Writes the gallery folder atomically (a failed save leaves the previous gallery as it was).

        Returns:
            The gallery folder.
        """
        path = Path(path)
        with atomic_path(path, directory=True) as tmp:
            np.save(tmp / VECTORS_NAME, self._vectors, allow_pickle=False)
            np.save(tmp / LABELS_NAME, self._labels, allow_pickle=False)
            (tmp / IMAGE_IDS_NAME).write_text(json.dumps(self.image_ids), encoding="utf-8")
            manifest = {
                "format": FORMAT_NAME,
                "format_version": FORMAT_VERSION,
                "model": self.model.to_dict(),
                "storage_dtype": self.dtype,
                "rows": len(self),
                "dim": self.dim,
                "identities": self.identities,
                "files": {name: {"bytes": (tmp / name).stat().st_size, "sha256": sha256_file(tmp / name)}
                          for name in (VECTORS_NAME, LABELS_NAME, IMAGE_IDS_NAME)},
                "saved_utc": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
                "keras_sphereface_version": __version__,
            }
            (tmp / MANIFEST_NAME).write_text(json.dumps(manifest, indent=1) + "\n", encoding="utf-8")
        return path

    @classmethod
    def load(cls, path: str | os.PathLike, model: GalleryModel | None = None, verify: bool = True) -> Gallery:
        """Reads a gallery folder, checking its manifest, files and (when given) the model.

        Args:
            path: str or path-like. The gallery folder.
            model: `GalleryModel` or None. The model about to be used with it: a gallery enrolled by a
                model with other identity fields is refused (before its arrays are read).
            verify: bool. Check each file's SHA-256 (sizes and shapes are always checked).

        Raises:
            FileNotFoundError: no such folder.
            GalleryError: not a gallery, a newer format, truncated or corrupt files, or another model.
        """
        path = Path(path)
        if not path.is_dir():
            raise FileNotFoundError(f"Gallery not found (a gallery is a folder made by ksf enroll). "
                                    f"Received: gallery={str(path)!r}")
        manifest = _read_manifest(path)
        stored_model = GalleryModel.from_dict(manifest["model"])
        if model is not None:
            differences = stored_model.differences(model)
            if differences:
                raise GalleryError(
                    f"{path} was enrolled with {stored_model.name} and this is {model.name}: their embeddings "
                    f"are not comparable ({'; '.join(differences)}). Enroll the faces again with this model "
                    f"into another gallery. Received: model={model.name!r}"
                )
        for name, facts in manifest["files"].items():
            _check_file(path / name, facts, verify)
        gallery = cls(stored_model, manifest["storage_dtype"])
        try:
            vectors = np.load(path / VECTORS_NAME, allow_pickle=False)
            labels = np.load(path / LABELS_NAME, allow_pickle=False)
            image_ids = json.loads((path / IMAGE_IDS_NAME).read_text(encoding="utf-8"))
        except (OSError, ValueError) as error:
            raise GalleryError(f"{path}: unreadable gallery files ({error}).") from error
        rows, dim, identities = manifest["rows"], manifest["dim"], manifest["identities"]
        expected = (rows, dim if dim is not None else vectors.shape[-1])
        if vectors.shape != expected or vectors.dtype != STORAGE_NUMPY_DTYPES[gallery.dtype] or \
                labels.shape != (rows,) or len(image_ids) != rows or len(set(image_ids)) != rows or \
                (rows and not 0 <= labels.min() <= labels.max() < len(identities)):
            raise GalleryError(f"{path}: the files disagree with the manifest ({rows} rows of dimension {dim}, "
                               f"{gallery.dtype}). Received: vectors {vectors.shape} {vectors.dtype}, labels "
                               f"{labels.shape}, {len(image_ids)} image ids")
        gallery._vectors, gallery._labels = vectors, labels.astype(np.int32)
        gallery.identities, gallery.image_ids = [str(n) for n in identities], [str(i) for i in image_ids]
        return gallery


def _read_manifest(path: Path) -> dict[str, Any]:
    file = path / MANIFEST_NAME
    if not file.is_file():
        raise GalleryError(f"{path} is not a gallery: it has no {MANIFEST_NAME}. Received: gallery={str(path)!r}")
    try:
        manifest = json.loads(file.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise GalleryError(f"{file}: truncated or not valid JSON ({error}).") from error
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT_NAME:
        raise GalleryError(f"{file} is not a keras_sphereface gallery manifest. "
                           f"Received: format={manifest.get('format') if isinstance(manifest, dict) else None!r}")
    version = manifest.get("format_version")
    if not isinstance(version, int) or version > FORMAT_VERSION:
        raise GalleryError(f"{file}: gallery format_version {version!r} is newer than this keras_sphereface reads "
                           f"({FORMAT_VERSION}); upgrade keras_sphereface. Received: format_version={version!r}")
    missing = [key for key in ("model", "storage_dtype", "rows", "dim", "identities", "files") if key not in manifest]
    if missing or manifest.get("storage_dtype") not in STORAGE_NUMPY_DTYPES:
        raise GalleryError(f"{file}: incomplete manifest (missing {missing}, storage_dtype "
                           f"{manifest.get('storage_dtype')!r}). Received: keys={sorted(manifest)}")
    return manifest


def _check_file(file: Path, facts: dict[str, Any], verify: bool) -> None:
    """Raises `GalleryError` when `file` is missing, has another size (truncated) or another SHA-256."""
    if not file.is_file():
        raise GalleryError(f"{file} is missing from the gallery. Received: gallery={str(file.parent)!r}")
    size = file.stat().st_size
    if size != facts.get("bytes"):
        raise GalleryError(f"{file} is truncated or was changed: {size} bytes, the manifest says {facts.get('bytes')}. "
                           f"Received: size={size}")
    if verify and sha256_file(file) != facts.get("sha256"):
        raise GalleryError(f"{file} is corrupt: its SHA-256 differs from the manifest's. Received: size={size}")
