"""`weights=` resolution: what a builder's `weights` argument means and which verified file it loads.

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

Tags of your own (`register_weights`, `ksf train --tag`) come from the local registry and resolve the
same way. The registry is read once per lookup; a tag's input size is checked against the requested
`input_shape` before the model is built.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from pathlib import Path

import keras

from keras_sphereface.models import registry, store
from keras_sphereface.models.convert.files import convert_source


def _is_path_like(weights) -> bool:
    if isinstance(weights, os.PathLike):
        return True
    return isinstance(weights, str) and (os.sep in weights or weights.endswith(".h5") or
                                         os.path.exists(weights))


def check_weights_argument(weights: str | os.PathLike | None, model_name: str | None,
                           input_shape: Sequence[int] | None = None) -> registry.WeightsEntry | None:
    """Validates `weights=` before a model is built (keras.applications style).

    Args:
        weights: None, str or path-like. None, a registry tag of `model_name`, or a weights file path.
        model_name: str or None. Builder name (`"Sphere20"`, ...); None when tags are not allowed.
        input_shape: sequence of int or None. The requested `(height, width, 3)`: a tag's weights must
            have been trained at that size.

    Returns:
        The registry entry when `weights` is a tag, else None.

    Raises:
        ValueError: for an unknown tag, a missing file, or a tag of another input size.
    """
    if weights is None:
        return None
    entry, tags = registry.find_entry(model_name, weights) if model_name and isinstance(weights, str) else (
        None, registry.tags_for(model_name) if model_name else [])
    if entry is not None:
        if input_shape is not None:
            _check_input_size(entry, tuple(input_shape)[:2])
        return entry
    if _is_path_like(weights):
        if Path(weights).is_file():
            return None
        raise ValueError(f"The weights file does not exist. Received: weights={os.fspath(weights)!r}")
    raise ValueError(
        f"`weights` must be None, a registry tag ({', '.join(map(repr, tags)) or 'none registered'} for "
        f"{model_name or 'this model'}) or the path of a .weights.h5 file. Received: weights={weights!r}"
    )


def load_model_weights(model: keras.Model, weights: str | os.PathLike,
                       entry: registry.WeightsEntry | None = None) -> None:
    """Loads `weights` into `model`: the file of `entry` (resolved as above) or the path `weights`.

    Args:
        model: keras.Model. The built architecture.
        weights: str or path-like. The tag or file given by the user.
        entry: WeightsEntry or None. What `check_weights_argument` returned: the tag's entry, or None
            for a file path.
    """
    path = fetch_entry(entry, model=model) if entry is not None else Path(weights)
    try:
        model.load_weights(path)
    except (OSError, ValueError) as error:
        if entry is not None:
            advice = (f"It is the cached file of {entry.model}(weights={entry.tag!r}): delete it and it will be "
                      f"fetched or converted again on the next load.")
        else:
            advice = "Check that the file was copied completely and was written by Keras (model.save_weights)."
        raise ValueError(f"Cannot load weights file {path}: it is truncated, not HDF5, or not a Keras weights "
                         f"file for {model.name} ({type(error).__name__}: {str(error).splitlines()[0]}). "
                         f"{advice} Received: weights={os.fspath(weights)!r}") from error


def _verified(path: Path, entry: registry.WeightsEntry) -> bool:
    """Whether `path` is present and trustworthy; raises ChecksumError when it is present but corrupt."""
    if not path.is_file():
        return False
    if entry.sha256 is not None:
        store.verify_file(path, entry.sha256, entry.size, what=f"weights file for {entry.model}/{entry.tag}")
        return True
    sidecar = store.sidecar_path(path)
    if not sidecar.is_file():
        return False  # an interrupted conversion, or a file of unknown origin: convert again
    recorded = json.loads(sidecar.read_text(encoding="utf-8"))
    store.verify_file(path, recorded["sha256"], recorded.get("size"),
                what=f"converted weights for {entry.model}/{entry.tag} (checksum recorded in {sidecar})")
    return True


def _candidates(relative: str, dirs: list[Path]) -> list[Path]:
    names = [relative] + ([Path(relative).name] if Path(relative).name != relative else [])
    return [directory / name for directory in dirs for name in names]


def _find_source(entry: registry.WeightsEntry, looked: list[str]) -> Path | None:
    source = entry.source
    dirs = [*store.search_dirs(), store.cache_dir() / "sources"]
    for candidate in _candidates(source.file, dirs):
        looked.append(str(candidate))
        if candidate.is_file():
            store.verify_file(candidate, source.sha256, source.size,
                        what=f"{source.format} checkpoint for {entry.model}/{entry.tag}")
            return candidate
    if source.url and source.sha256:
        target = store.cache_dir() / "sources" / Path(source.file).name
        looked.append(source.url)
        try:
            return store.download(source.url, target, source.sha256, source.size)
        except OSError as error:
            looked[-1] += f" ({error})"
    return None


def _check_input_size(entry: registry.WeightsEntry, size: tuple[int, int]) -> None:
    if tuple(size) != tuple(entry.input_size):
        raise ValueError(
            f"Weights {entry.model}/{entry.tag} are for input size {tuple(entry.input_size)} "
            f"(height, width); build the model with input_shape=({entry.input_size[0]}, "
            f"{entry.input_size[1]}, 3). Received: input_shape={tuple(size)}"
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
    return fetch_entry(registry.get_entry(model_name, tag), model)


def fetch_entry(entry: registry.WeightsEntry, model: keras.Model | None = None) -> Path:
    """`fetch_weights` for an entry already read from the registry."""
    if model is not None:
        _check_input_size(entry, tuple(model.input_shape[1:3]))
    looked: list[str] = []
    cached = store.cache_dir() / entry.file
    for candidate in [cached, *(d / entry.file for d in store.search_dirs())]:
        looked.append(str(candidate))
        if _verified(candidate, entry):
            return candidate
    if entry.url and entry.sha256:
        looked.append(entry.url)
        try:
            return store.download(entry.url, cached, entry.sha256, entry.size)
        except OSError as error:
            looked[-1] += f" ({error})"
    if entry.source is not None and model is not None:
        source_path = _find_source(entry, looked)
        if source_path is not None:
            return convert_source(entry, source_path, model)
    raise store.WeightsNotFoundError(_not_found_message(entry, looked))


def _not_found_message(entry: registry.WeightsEntry, looked: list[str]) -> str:
    wanted = entry.file if entry.source is None else f"{entry.file} or its source {entry.source.file}"
    lines = [f"Pretrained weights {entry.model}(weights={entry.tag!r}) need {wanted}, which was not found.",
             "Looked in:", *(f"  {place}" for place in looked)]
    if not store.search_dirs():
        lines.append("  ($KSF_WEIGHTS_DIR is not set)")
    if not entry.url and (entry.source is None or not entry.source.url):
        lines.append("No download URL is registered for these weights.")
    lines.append("To provide them:")
    if entry.source is not None:
        lines.append(f"  - put {entry.source.file} under a directory listed in $KSF_WEIGHTS_DIR, or")
        if entry.convert_command:
            lines.append(f"  - convert it into the cache: {entry.convert_command}, or")
    lines.append(f"  - put {entry.file} in {store.cache_dir()}, or pass weights='path/to/{entry.file}'.")
    return "\n".join(lines)
