"""The weights store: the cache folder, the search path, checksums, provenance sidecars, downloads.

Files land in `$KERAS_SPHEREFACE_HOME/weights/` (default `~/.keras/keras_sphereface/weights`), always
written atomically; a file whose checksum or size does not match is refused with a `ChecksumError`.
This module knows files, not models: `resolver` decides which file a `weights=` argument means, and
`convert.files` turns other frameworks' checkpoints into files here.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path

import keras

from keras_sphereface.utils.atomic import atomic_write, sha256_file

SIDECAR_SUFFIX = ".provenance.json"

class WeightsNotFoundError(FileNotFoundError):
    """Raised when a registry tag's weights are neither cached, in the search path, nor downloadable."""


class ChecksumError(ValueError):
    """Raised when a weights or checkpoint file does not have the registered SHA-256 or size."""


def weights_home() -> Path:
    """The cache root: `$KERAS_SPHEREFACE_HOME`, default `~/.keras/keras_sphereface`."""
    value = os.environ.get("KERAS_SPHEREFACE_HOME")
    return Path(value).expanduser() if value else Path("~/.keras/keras_sphereface").expanduser()


def cache_dir() -> Path:
    """Where resolved weights live: `weights_home() / "weights"`."""
    return weights_home() / "weights"


def search_dirs() -> list[Path]:
    """The directories of `$KSF_WEIGHTS_DIR` (os.pathsep separated), in order; empty when unset."""
    value = os.environ.get("KSF_WEIGHTS_DIR", "")
    return [Path(part).expanduser() for part in value.split(os.pathsep) if part]


def sidecar_path(path: str | os.PathLike) -> Path:
    """The provenance sidecar of a converted weights file: `<path>.provenance.json`."""
    return Path(os.fspath(path) + SIDECAR_SUFFIX)


def verify_file(path: str | os.PathLike, sha256: str | None, size: int | None = None,
                what: str = "file") -> str:
    """Checks a file's size and SHA-256; returns the digest.

    Args:
        path: str or path-like. The file.
        sha256: str or None. Expected hex digest; None skips the digest check.
        size: int or None. Expected size in bytes; None skips the size check.
        what: str. How to call the file in the error message.

    Raises:
        ChecksumError: on a size or digest mismatch, naming the file and both values.
    """
    path = Path(path)
    actual_size = path.stat().st_size
    if size is not None and actual_size != size:
        raise ChecksumError(
            f"Refusing {what} {path}: it has {actual_size} bytes, the registry says {size} (truncated or "
            f"wrong file). Delete it and provide the right file. Received: size={actual_size}"
        )
    digest = sha256_file(path)
    if sha256 is not None and digest != sha256.lower():
        raise ChecksumError(
            f"Refusing {what} {path}: its SHA-256 is {digest}, expected {sha256} (corrupt or wrong file). "
            f"Delete it and provide the right file. Received: sha256={digest}"
        )
    return digest


def write_sidecar(path: str | os.PathLike, record: dict) -> dict:
    """Records the SHA-256 and size of a converted weights file (plus `record`) in its sidecar."""
    path = Path(path)
    full = {"file": path.name, "sha256": sha256_file(path), "size": path.stat().st_size,
            "keras_version": keras.__version__, **record}
    with atomic_write(sidecar_path(path)) as handle:
        json.dump(full, handle, indent=2, sort_keys=True)
        handle.write("\n")
    return full


# --- download --------------------------------------------------------------------------------------


def download(url: str, target: str | os.PathLike, sha256: str, size: int | None = None) -> Path:
    """Downloads `url` to `target` with `keras.utils.get_file(file_hash=sha256)`, atomically.

    The file is fetched into a temporary directory beside `target` and only moved to `target` once
    its size and SHA-256 match, so a failed or corrupt download never appears in the cache.

    Raises:
        ChecksumError: the downloaded file has the wrong size or digest.
        OSError: the download failed (offline, 404, ...).
    """
    if not sha256:
        raise ValueError(f"Refusing to download without a SHA-256 to verify. Received: sha256={sha256!r}")
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=f".{target.name}.download-", dir=target.parent) as tmp:
        try:
            fetched = keras.utils.get_file(
                fname=target.name, origin=url, file_hash=sha256, hash_algorithm="sha256",
                cache_dir=tmp, cache_subdir="download",
            )
        except ValueError:
            partial = Path(tmp, "download", target.name)
            if partial.is_file():  # get_file leaves a file that failed its hash check
                verify_file(partial, sha256, size, what=f"download of {url}")
            raise
        except Exception as error:  # get_file wraps URL errors in a bare Exception
            raise OSError(f"Download of {url} failed: {error}") from error
        verify_file(fetched, sha256, size, what=f"download of {url}")
        os.replace(fetched, target)
    return target
