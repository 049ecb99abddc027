"""The pretrained-weights registry: `keras_sphereface/models/registry.json`, read as data.

The registry ships inside the package (package data), so the same file is found from a source
checkout and from an installed wheel; `pretrained/README.md` in the repository points at it.
One entry per (model, tag): what the weights file is, how to verify it (SHA-256, size), where it
comes from (a URL, or a source checkpoint plus the converter that turns it into Keras weights),
the input it expects and the LFW accuracy it reaches.

Weights you train yourself are registered under tags of your own (`keras_sphereface.models.register_weights`,
`ksf train --tag`) in a local registry beside the cache, `$KERAS_SPHEREFACE_HOME/registry.local.json`,
with the same fields; `load_registry()` returns the packaged entries followed by the local ones.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

from keras_sphereface.models.store import weights_home
from keras_sphereface.utils.atomic import atomic_write

REGISTRY_FILE = Path(__file__).with_name("registry.json")
LOCAL_REGISTRY_NAME = "registry.local.json"

_REQUIRED = ("model", "tag", "file", "input_size", "preprocessing", "training_data", "licence")


@dataclasses.dataclass(frozen=True)
class WeightsSource:
    """A checkpoint in another framework that is converted into the entry's Keras weights file.

    Attributes:
        format: str. Converter name: `"torch-npz"` or `"caffe"`.
        file: str. Path relative to a weights search directory, e.g. `"mobilefacenet-casia/x.npz"`.
        sha256: str or None. Expected digest; None when unknown (recorded on first conversion).
        size: int or None. Expected size in bytes.
        url: str or None. Where to download it from; None when there is no stable public URL.
        options: dict. Keyword arguments for the converter.
    """

    format: str
    file: str
    sha256: str | None = None
    size: int | None = None
    url: str | None = None
    options: dict = dataclasses.field(default_factory=dict)


@dataclasses.dataclass(frozen=True)
class WeightsEntry:
    """One registry entry (see `registry.json` for the meaning of every field)."""

    model: str
    tag: str
    file: str
    input_size: tuple[int, int]
    sha256: str | None = None
    size: int | None = None
    url: str | None = None
    source: WeightsSource | None = None
    convert_command: str | None = None
    raw: dict = dataclasses.field(default_factory=dict, compare=False, repr=False)


def _entry_from_json(item: dict[str, Any], index: int, path: Path) -> WeightsEntry:
    missing = [key for key in _REQUIRED if key not in item]
    if missing:
        raise ValueError(f"{path}: entry {index} lacks the fields {missing}. Received: entry={item!r}")
    source = item.get("source")
    if source is not None:
        try:
            source = WeightsSource(**{k: v for k, v in source.items() if not k.startswith("_")})
        except TypeError as error:
            raise ValueError(f"{path}: entry {index} has a bad `source` ({error}). "
                             f"Received: source={source!r}") from None
    return WeightsEntry(
        model=item["model"], tag=item["tag"], file=item["file"], input_size=tuple(item["input_size"]),
        sha256=item.get("sha256"), size=item.get("size"), url=item.get("url"), source=source,
        convert_command=item.get("convert_command"), raw=item,
    )


def local_registry_path() -> Path:
    """The registry of your own tags: `$KERAS_SPHEREFACE_HOME/registry.local.json`."""
    return weights_home() / LOCAL_REGISTRY_NAME


def _read_entries(path: Path) -> list[WeightsEntry]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as error:
        raise ValueError(f"{path}: unreadable weights registry ({error}). Fix or delete the file. "
                         f"Received: path={str(path)!r}") from None
    if not isinstance(data, dict) or not isinstance(data.get("entries"), list):
        raise ValueError(f"{path}: a weights registry needs an `entries` list. Received: keys="
                         f"{sorted(data) if isinstance(data, dict) else type(data).__name__}")
    return [_entry_from_json(item, i, path) for i, item in enumerate(data["entries"])]


def load_registry(path: str | Path | None = None) -> list[WeightsEntry]:
    """Reads and validates the registry.

    Args:
        path: str, path-like or None. A registry file; None reads the packaged `registry.json` and then
            the local registry of your own tags (`local_registry_path()`), when it exists.

    Returns:
        The entries, in file order.
    """
    if path is not None:
        entries = _read_entries(Path(path))
    else:
        local = local_registry_path()
        entries = _read_entries(REGISTRY_FILE) + (_read_entries(local) if local.is_file() else [])
    seen = set()
    for entry in entries:
        key = (entry.model, entry.tag)
        if key in seen:
            raise ValueError(f"{path or local_registry_path()}: two entries for model {entry.model!r} and tag "
                             f"{entry.tag!r}. Received: tag={entry.tag!r}")
        seen.add(key)
    return entries


def find_entry(model: str, tag: str, path: str | Path | None = None) -> tuple[WeightsEntry | None, list[str]]:
    """One read of the registry: the entry of `(model, tag)` (or None) and all tags of `model`."""
    entries = [entry for entry in load_registry(path) if entry.model == model]
    match = next((entry for entry in entries if entry.tag == tag), None)
    return match, [entry.tag for entry in entries]


def tags_for(model: str, path: str | Path | None = None) -> list[str]:
    """The registry tags available for a builder name such as `"MobileFaceNet"`."""
    return find_entry(model, "", path)[1]


def get_entry(model: str, tag: str, path: str | Path | None = None) -> WeightsEntry:
    """The entry for `model` (a builder name, e.g. `"Sphere20"`) and `tag` (e.g. `"casia"`)."""
    entry, tags = find_entry(model, tag, path)
    if entry is None:
        raise ValueError(
            f"No pretrained weights {tag!r} for {model}; available: {tags or 'none'}. Received: weights={tag!r}"
        )
    return entry


def add_local_entry(record: dict[str, Any]) -> WeightsEntry:
    """Adds (or replaces) an entry of the local registry, atomically; returns it validated.

    Args:
        record: dict. Registry fields (`model`, `tag`, `file`, `input_size`, `preprocessing`,
            `training_data`, `licence`, `sha256`, `size`, ...), as in `registry.json`.

    Raises:
        ValueError: the tag is one of the packaged registry's for that model, or the record lacks fields.
    """
    path = local_registry_path()
    entry = _entry_from_json(record, 0, path)
    if any(e.model == entry.model and e.tag == entry.tag for e in _read_entries(REGISTRY_FILE)):
        raise ValueError(f"Tag {entry.tag!r} of {entry.model} is a shipped tag; choose another name. "
                         f"Received: tag={entry.tag!r}")
    data = json.loads(path.read_text(encoding="utf-8")) if path.is_file() else {"format_version": 1, "entries": []}
    data["entries"] = [item for item in data["entries"]
                       if (item.get("model"), item.get("tag")) != (entry.model, entry.tag)] + [record]
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_write(path) as handle:
        json.dump(data, handle, indent=2, sort_keys=True)
        handle.write("\n")
    return entry
