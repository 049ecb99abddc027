"""`embed_files`: image files -> one L2-normalized embedding row per image, through `embed_images`.

The library behind `ksf embed`: the files are collected (`image_files.collect_images`), cropped by a
`FaceSource` (`image_files.files_source`) and embedded by `embed_images` (its batches, threads and
embedding cache). Images without a usable face keep their row (NaN values) with the reason, never dropped.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from keras_sphereface.data.face_source import FaceSource
from keras_sphereface.inference.batch import embed_images
from keras_sphereface.inference.cache import EmbeddingCache, open_cache
from keras_sphereface.inference.embedder import Embedder
from keras_sphereface.inference.image_files import collect_images, files_source
from keras_sphereface.inference.load import open_face_model
from keras_sphereface.inference.table import EmbeddingTable
from keras_sphereface.utils.vectors import l2_normalize_rows

if TYPE_CHECKING:
    from keras_sphereface.utils.types import ModelLike


def embed_image_files(
    embedder: Embedder,
    paths: Sequence[str | os.PathLike],
    source: FaceSource,
    batch_size: int = 32,
    cache: EmbeddingCache | None = None,
    workers: int = 2,
) -> EmbeddingTable:
    """Embeds exactly the image files `paths` (no folder search), one row per path.

    Args:
        embedder: `Embedder`. From `open_face_model`.
        paths: sequence of str or path-like. Image files, relative to `source.root`.
        source: `FaceSource`. How a file becomes a crop (`image_files.files_source`).
        batch_size: int. Images per forward pass.
        cache: `EmbeddingCache` or None.
        workers: int. Threads that read, decode and align images.

    Returns:
        An `EmbeddingTable`: float32 `(len(paths), D)` unit rows, NaN rows (with the reason) for the
        images without a usable face.
    """
    names = [str(path) for path in paths]
    vectors, _, stats = embed_images(embedder, names, source, flip=False, batch_size=batch_size, cache=cache,
                                     progress=False, workers=workers, skip_unusable=True)
    errors = [stats.failures.get(i) for i in range(len(names))]
    ok = np.array([e is None for e in errors], dtype=bool)
    embeddings = vectors.astype(np.float32)
    embeddings[ok] = l2_normalize_rows(embeddings[ok])
    return EmbeddingTable(names, embeddings, errors, embedder.description, stats)


def embed_files(
    inputs: Sequence[str | os.PathLike],
    model: ModelLike | Embedder,
    weights: str | os.PathLike | None = None,
    align: str = "aligned",
    landmarks: str | os.PathLike | None = None,
    batch_size: int = 32,
    detector: Any = None,
    cache_dir: str | os.PathLike | bool | None = False,
    workers: int = 2,
) -> EmbeddingTable:
    """Embeds image files (and the images in folders), one row per image.

    Args:
        inputs: sequence of str or path-like. Image files and/or folders (see `collect_images`).
        model: a zoo name, `.keras` file, export folder or `keras.Model` (see `open_face_model`), or an
            `Embedder` already opened.
        weights: str, path-like or None. Zoo models only.
        align: str. One of `keras_sphereface.data.face_source.ALIGN_MODES`: `"aligned"`, `"landmarks"`
            or `"detect"` (see `image_files.files_source`).
        landmarks: str, path-like or None. Landmark file for `align="landmarks"`.
        batch_size: int. Images per forward pass.
        detector: object or None. A face detector for `align="detect"` (default: MTCNN).
        cache_dir: str, path-like, bool or None. The embedding cache (see `cache.open_cache`): False (the
            default) none, None or True the default cache folder, else that folder.
        workers: int. Threads that read, decode and align images.

    Returns:
        An `EmbeddingTable`; images that fail keep a NaN row and their reason; `stats` counts the cache hits.

    Raises:
        FileNotFoundError, ValueError, ContractError: missing inputs, no images, bad model (not per image).
        ImportError: `align="detect"` without the optional `mtcnn` package.
    """
    paths = collect_images(inputs)
    embedder = open_face_model(model, weights, batch_size)
    source = files_source(embedder, paths, align, landmarks, detector)
    cache = open_cache(cache_dir, embedder.fingerprint)
    return embed_image_files(embedder, paths, source, batch_size, cache, workers)
