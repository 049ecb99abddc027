"""`EmbeddingCache`: embeddings on disk, one `.npz` file per model fingerprint, written atomically."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import numpy as np

from keras_sphereface.models.store import weights_home
from keras_sphereface.utils.atomic import atomic_path


def default_cache_dir() -> Path:
    """`<home>/cache/embeddings`, home being `$KERAS_SPHEREFACE_HOME` as for weights."""
    return weights_home() / "cache" / "embeddings"


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
        """The cached vector of `key`, or None."""
        return self.entries.get(key)

    def put(self, key: str, vector: np.ndarray) -> None:
        """Stores `vector` under `key` (written by `save`)."""
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


def open_cache(cache_dir: str | os.PathLike | bool | None, fingerprint: str) -> EmbeddingCache | None:
    """The cache a `cache_dir` option asks for: None or True: `default_cache_dir()`; False: none; else that folder.

    Args:
        cache_dir: str, path-like, bool or None. As `ksf eval --cache-dir` / `--no-cache` give it.
        fingerprint: str. The model fingerprint (`Embedder.fingerprint`).
    """
    if cache_dir is False:
        return None
    directory = default_cache_dir() if cache_dir in (None, True) else Path(cache_dir)
    return EmbeddingCache(directory, fingerprint)
