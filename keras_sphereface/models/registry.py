"""The pretrained-weights registry: `keras_sphereface/models/registry.json`, read as data.

The registry ships inside the package (package data), so the same file is found from a source
checkout and from an installed wheel; `pretrained/README.md` in the repository points at it.
One entry per (model, tag): what the weights file is, how to verify it (SHA-256, size), where it
comes from (a URL, or a source checkpoint plus the converter that turns it into Keras weights),
the input it expects and the LFW accuracy it reaches.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

REGISTRY_FILE = Path(__file__).with_name("registry.json")

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


def load_registry(path: str | Path | None = None) -> list[WeightsEntry]:
    """Reads and validates the registry.

    Args:
        path: str, path-like or None. A registry file; None reads the packaged `registry.json`.

    Returns:
        The entries, in file order.
    """
    path = Path(path) if path is not None else REGISTRY_FILE
    data = json.loads(path.read_text(encoding="utf-8"))
    entries = [_entry_from_json(item, i, path) for i, item in enumerate(data["entries"])]
    seen = set()
    for entry in entries:
        key = (entry.model, entry.tag)
        if key in seen:
            raise ValueError(f"{path}: two entries for model {entry.model!r} and tag {entry.tag!r}. "
                             f"Received: tag={entry.tag!r}")
        seen.add(key)
    return entries


def tags_for(model: str, path: str | Path | None = None) -> list[str]:
    """The registry tags available for a builder name such as `"MobileFaceNet"`."""
    return [entry.tag for entry in load_registry(path) if entry.model == model]


def get_entry(model: str, tag: str, path: str | Path | None = None) -> WeightsEntry:
    """The entry for `model` (a builder name, e.g. `"Sphere20"`) and `tag` (e.g. `"casia"`)."""
    for entry in load_registry(path):
        if entry.model == model and entry.tag == tag:
            return entry
    raise ValueError(
        f"No pretrained weights {tag!r} for {model}; available: {tags_for(model, path) or 'none'}. "
        f"Received: weights={tag!r}"
    )
