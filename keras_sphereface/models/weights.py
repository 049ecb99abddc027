"""`weights=` resolution: registry tags, paths, the cache, the search path, checksummed downloads.

A tag such as `MobileFaceNet(weights="casia")` resolves in this order:

1. the cache, `$KERAS_SPHEREFACE_HOME/weights/<file>` (default `~/.keras/keras_sphereface`), verified
   against the registry's SHA-256 or, for locally converted weights, the sidecar
   `<file>.provenance.json` written at conversion time;
2. `<dir>/<file>` for each directory of the search path `$KSF_WEIGHTS_DIR` (os.pathsep separated),
   verified the same way;
3. a download of the registry URL with SHA-256 verification (`keras.utils.get_file(file_hash=...)`);
4. for weights converted from another framework, the source checkpoint (found in the search path or
   the cache, or downloaded), verified by its own SHA-256, converted once into the cache;
5. otherwise a `WeightsNotFoundError` that names the missing file, where it was looked for and how
   to provide it.

Every file that lands in the cache is written atomically; a file whose checksum or size does not match
is refused with a `ChecksumError`.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path

import keras

from keras_sphereface.models import registry
from keras_sphereface.utils.atomic import atomic_path, atomic_write, sha256_file

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


# --- the `weights=` argument -----------------------------------------------------------------------


def _is_path_like(weights) -> bool:
    if isinstance(weights, os.PathLike):
        return True
    return isinstance(weights, str) and (os.sep in weights or weights.endswith(".h5") or
                                         os.path.exists(weights))


def check_weights_argument(weights, model_name: str | None) -> None:
    """Validates `weights=` before a model is built (keras.applications style).

    Args:
        weights: None, str or path-like. None, a registry tag of `model_name`, or a weights file path.
        model_name: str or None. Builder name (`"Sphere20"`, ...); None when tags are not allowed.

    Raises:
        ValueError: for an unknown tag or a missing file.
    """
    if weights is None:
        return
    tags = registry.tags_for(model_name) if model_name else []
    if isinstance(weights, str) and weights in tags:
        return
    if _is_path_like(weights):
        if Path(weights).is_file():
            return
        raise ValueError(f"The weights file does not exist. Received: weights={os.fspath(weights)!r}")
    raise ValueError(
        f"`weights` must be None, a registry tag ({', '.join(map(repr, tags)) or 'none registered'} for "
        f"{model_name or 'this model'}) or the path of a .weights.h5 file. Received: weights={weights!r}"
    )


def load_model_weights(model: keras.Model, weights, model_name: str | None) -> None:
    """Loads `weights` (a tag of `model_name` or a path) into `model`, resolving tags as above."""
    if isinstance(weights, str) and model_name and weights in registry.tags_for(model_name):
        path = fetch_weights(model_name, weights, model=model)
    else:
        path = Path(weights)
    model.load_weights(path)


# --- checksums and sidecars ------------------------------------------------------------------------


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


def _verified(path: Path, entry: registry.WeightsEntry) -> bool:
    """Whether `path` is present and trustworthy; raises ChecksumError when it is present but corrupt."""
    if not path.is_file():
        return False
    if entry.sha256 is not None:
        verify_file(path, entry.sha256, entry.size, what=f"weights file for {entry.model}/{entry.tag}")
        return True
    sidecar = sidecar_path(path)
    if not sidecar.is_file():
        return False  # an interrupted conversion, or a file of unknown origin: convert again
    recorded = json.loads(sidecar.read_text(encoding="utf-8"))
    verify_file(path, recorded["sha256"], recorded.get("size"),
                what=f"converted weights for {entry.model}/{entry.tag} (checksum recorded in {sidecar})")
    return True


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


# --- resolution ------------------------------------------------------------------------------------


def _candidates(relative: str, dirs: list[Path]) -> list[Path]:
    names = [relative] + ([Path(relative).name] if Path(relative).name != relative else [])
    return [directory / name for directory in dirs for name in names]


def _find_source(entry: registry.WeightsEntry, looked: list[str]) -> Path | None:
    source = entry.source
    dirs = [*search_dirs(), cache_dir() / "sources"]
    for candidate in _candidates(source.file, dirs):
        looked.append(str(candidate))
        if candidate.is_file():
            verify_file(candidate, source.sha256, source.size,
                        what=f"{source.format} checkpoint for {entry.model}/{entry.tag}")
            return candidate
    if source.url and source.sha256:
        target = cache_dir() / "sources" / Path(source.file).name
        looked.append(source.url)
        try:
            return download(source.url, target, source.sha256, source.size)
        except OSError as error:
            looked[-1] += f" ({error})"
    return None


def convert_file(format: str, model: keras.Model, source_path: str | os.PathLike,
                 target: str | os.PathLike, options: dict | None = None, sha256: str | None = None,
                 size: int | None = None, record: dict | None = None) -> Path:
    """Verifies a checkpoint, converts it into `model` and saves `target` atomically, with a sidecar.

    Args:
        format: str. `"torch-npz"` or `"caffe"`.
        model: keras.Model. The matching architecture; its weights are overwritten.
        source_path: str or path-like. The checkpoint.
        target: str or path-like. The `.weights.h5` to write.
        options: dict or None. Converter keyword arguments.
        sha256: str or None. The checkpoint's expected SHA-256 (None: unknown, recorded only).
        size: int or None. The checkpoint's expected size in bytes.
        record: dict or None. Extra fields for the sidecar (model, tag).

    Returns:
        `target` as a `Path`; its sidecar records its own and the checkpoint's SHA-256.
    """
    from keras_sphereface.models.convert import load_checkpoint

    source_sha = verify_file(source_path, sha256, size, what=f"{format} checkpoint")
    load_checkpoint(format, model, source_path, **(options or {}))
    target = Path(target)
    with atomic_path(target) as tmp:
        model.save_weights(tmp)
    write_sidecar(target, {**(record or {}), "converter": format, "source_file": Path(source_path).name,
                           "source_sha256": source_sha, "source_sha256_registered": sha256 is not None})
    return target


def convert_source(entry: registry.WeightsEntry, source_path: str | os.PathLike, model: keras.Model,
                   output: str | os.PathLike | None = None) -> Path:
    """Converts a registry entry's source checkpoint into the entry's weights file (default: the cache).

    Args:
        entry: WeightsEntry. The registry entry (its `source` names converter, checksum and options).
        source_path: str or path-like. The checkpoint (`.npz` or `.caffemodel`).
        model: keras.Model. An architecture matching the entry; its weights are overwritten.
        output: str, path-like or None. Where to write; None writes into the cache.
    """
    source = entry.source
    target = Path(output) if output is not None else cache_dir() / entry.file
    return convert_file(source.format, model, source_path, target, source.options, source.sha256,
                        source.size, {"model": entry.model, "tag": entry.tag})


def _check_input_size(entry: registry.WeightsEntry, model: keras.Model | None) -> None:
    if model is None:
        return
    size = tuple(model.input_shape[1:3])
    if size != tuple(entry.input_size):
        raise ValueError(
            f"Weights {entry.model}/{entry.tag} are for input size {tuple(entry.input_size)} "
            f"(height, width); build the model with input_shape=({entry.input_size[0]}, "
            f"{entry.input_size[1]}, 3). Received: input_shape={model.input_shape[1:]}"
        )


def fetch_weights(model_name: str, tag: str, model: keras.Model | None = None) -> Path:
    """Returns a verified local `.weights.h5` for a registry tag, fetching or converting it if needed.

    Args:
        model_name: str. Builder name, e.g. `"MobileFaceNet"`.
        tag: str. Registry tag, e.g. `"casia"`.
        model: keras.Model or None. The architecture to convert into when conversion is needed
            (built by the caller with `weights=None`); None builds nothing and fails instead.

    Raises:
        WeightsNotFoundError: nothing found or downloadable; the message says what to do.
        ChecksumError: a file was found but is corrupt.
    """
    entry = registry.get_entry(model_name, tag)
    _check_input_size(entry, model)
    looked: list[str] = []
    for candidate in [cache_dir() / entry.file, *(d / entry.file for d in search_dirs())]:
        looked.append(str(candidate))
        if _verified(candidate, entry):
            return candidate
    target = cache_dir() / entry.file
    if entry.url and entry.sha256:
        looked.append(entry.url)
        try:
            return download(entry.url, target, entry.sha256, entry.size)
        except OSError as error:
            looked[-1] += f" ({error})"
    if entry.source is not None and model is not None:
        source_path = _find_source(entry, looked)
        if source_path is not None:
            return convert_source(entry, source_path, model)
    raise WeightsNotFoundError(_not_found_message(entry, looked))


def _not_found_message(entry: registry.WeightsEntry, looked: list[str]) -> str:
    wanted = entry.file if entry.source is None else f"{entry.file} or its source {entry.source.file}"
    lines = [f"Pretrained weights {entry.model}(weights={entry.tag!r}) need {wanted}, which was not found.",
             "Looked in:", *(f"  {place}" for place in looked)]
    if not search_dirs():
        lines.append("  ($KSF_WEIGHTS_DIR is not set)")
    if not entry.url and (entry.source is None or not entry.source.url):
        lines.append("No download URL is registered for these weights.")
    lines.append("To provide them:")
    if entry.source is not None:
        lines.append(f"  - put {entry.source.file} under a directory listed in $KSF_WEIGHTS_DIR, or")
        if entry.convert_command:
            lines.append(f"  - convert it into the cache: {entry.convert_command}, or")
    lines.append(f"  - put {entry.file} in {cache_dir()}, or pass weights='path/to/{entry.file}'.")
    return "\n".join(lines)
