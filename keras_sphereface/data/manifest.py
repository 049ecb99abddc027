"""Reads and checks the files `ksf make-tfrecords` writes beside the shards (`manifest.json`, `labels.json`).

The one reader of those files. Everything goes through `tf.io.gfile`, so shards on any file
system TensorFlow reads (local folders, `gs://...`, `ram://...`) give the same counts; paths are
split as strings, never through `pathlib` (which would turn `gs://bucket` into `gs:/bucket`).

`manifest.json` (written by `records.write_tfrecords`) holds, per split, the shards with their
`file` name, `num_examples`, `bytes` and `sha256`, and the total `num_classes`; `labels.json` holds
`num_classes` and the label of each identity.
"""

from __future__ import annotations

import json
import os
import posixpath
from collections.abc import Sequence

import tensorflow as tf

MANIFEST_NAME = "manifest.json"
LABELS_NAME = "labels.json"

_REWRITE_HINT = "it was written by `ksf make-tfrecords`: write the records again or remove it"


class ManifestError(ValueError):
    """An unreadable or invalid `manifest.json` / `labels.json`; the message names the file and what was expected."""


def _paths(path: str):
    """The path module that splits `path`: `posixpath` for URLs (`gs://`, `ram://`), else `os.path`."""
    return posixpath if "://" in path else os.path


def _folder(path: str) -> str:
    return _paths(path).dirname(path)


def _beside(folder: str, name: str) -> str:
    return _paths(folder).join(folder, name)


def match_shards(pattern: str | Sequence[str]) -> list[str]:
    """The sorted shard paths matching glob pattern(s) (`tf.io.gfile.glob`: any file system).

    Raises:
        ValueError: no file matches.
    """
    patterns = [pattern] if isinstance(pattern, str) else [str(p) for p in pattern]
    files = sorted({f for p in patterns for f in tf.io.gfile.glob(p)})
    if not files:
        raise ValueError(f"No TFRecord file matches the pattern. Received: pattern={pattern!r}")
    return files


def _read_object(path: str) -> dict:
    """The JSON object in `path`."""
    try:
        with tf.io.gfile.GFile(path, "r") as handle:
            value = json.load(handle)
    except (OSError, ValueError, tf.errors.OpError) as error:
        raise ManifestError(f"Cannot read {path} ({type(error).__name__}: {error}); expected the JSON object "
                            f"{_REWRITE_HINT}.") from None
    if not isinstance(value, dict):
        raise ManifestError(f"{path} is not the JSON object {_REWRITE_HINT}. Received: {type(value).__name__}")
    return value


def _is_count(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def _check_manifest(path: str, manifest: dict) -> None:
    """Refuses a manifest whose splits and shard entries are not as `write_tfrecords` writes them."""
    splits = manifest.get("splits", {})
    if not isinstance(splits, dict):
        raise ManifestError(f"{path}: expected `splits` to be an object of splits; {_REWRITE_HINT}. Received: "
                            f"splits={type(splits).__name__}")
    for name, split in splits.items():
        shards = split.get("shards", []) if isinstance(split, dict) else None
        if not isinstance(shards, list):
            raise ManifestError(f"{path}: expected split {name!r} to be an object with a `shards` list; "
                                f"{_REWRITE_HINT}. Received: {split!r:.200}")
        for entry in shards:
            valid = (isinstance(entry, dict) and isinstance(entry.get("file"), str)
                     and _is_count(entry.get("num_examples"))
                     and (entry.get("bytes") is None or _is_count(entry["bytes"])))
            if not valid:
                raise ManifestError(f"{path}: expected each shard of split {name!r} to be an object with `file` "
                                    f"(str), `num_examples` and `bytes` (integers >= 0); {_REWRITE_HINT}. "
                                    f"Received: {entry!r:.200}")


def read_manifest(folder: str) -> dict | None:
    """The parsed `manifest.json` of a shard folder.

    Args:
        folder: str. The folder holding the shards (local or any `tf.io.gfile` file system).

    Returns:
        dict, or None when the folder has no `manifest.json`.

    Raises:
        ManifestError: the file cannot be read, is not JSON, or its shard entries are not as
            `ksf make-tfrecords` writes them.
    """
    path = _beside(folder, MANIFEST_NAME)
    if not tf.io.gfile.exists(path):
        return None
    manifest = _read_object(path)
    _check_manifest(path, manifest)
    return manifest


def shard_entries(files: Sequence[str]) -> dict[str, dict | None]:
    """Each shard's entry in the `manifest.json` beside it.

    Args:
        files: sequence of str. Shard paths; each folder's manifest is read once.

    Returns:
        dict keyed by the paths as given: the shard's manifest entry (a dict with `file`,
        `num_examples`, `bytes`, ...), or None when its folder has no manifest or the manifest
        does not list it.

    Raises:
        ManifestError: an unreadable or invalid manifest.
    """
    listed: dict[str, dict[str, dict]] = {}
    entries: dict[str, dict | None] = {}
    for path in files:
        folder = _folder(path)
        if folder not in listed:
            manifest = read_manifest(folder) or {}
            listed[folder] = {entry["file"]: entry for split in manifest.get("splits", {}).values()
                              for entry in split.get("shards", [])}
        entries[path] = listed[folder].get(_paths(path).basename(path))
    return entries


def count_examples(files: Sequence[str]) -> int | None:
    """The examples in `files` per the manifests beside them.

    Returns:
        int, the total `num_examples`, when the manifests list every file; else None.

    Raises:
        ManifestError: an unreadable or invalid manifest.
    """
    entries = shard_entries(files)
    if any(entry is None for entry in entries.values()):
        return None
    return sum(entry["num_examples"] for entry in entries.values())


def read_num_classes(pattern: str | list[str]) -> int | None:
    """The number of classes of TFRecords written by `write_tfrecords`, from the files beside them.

    Looks in each folder holding a matching shard for `labels.json` (else `manifest.json`) and
    reads its `num_classes` (all splits together: validation labels follow the training ones).

    Args:
        pattern: str or list of str. Glob pattern(s) of shards, or the shard paths.

    Returns:
        int, or None when no folder has either file.

    Raises:
        ValueError: no file matches, or folders that disagree (labels from different runs: pass
            `num_classes` explicitly, or rewrite the records).
        ManifestError: an unreadable labels/manifest file, or one without a valid `num_classes`.
    """
    found: dict[str, int] = {}
    for folder in sorted({_folder(f) for f in match_shards(pattern)}):
        for name in (LABELS_NAME, MANIFEST_NAME):
            path = _beside(folder, name)
            if tf.io.gfile.exists(path):
                value = _read_object(path).get("num_classes")
                if not _is_count(value) or value < 1:
                    raise ManifestError(f"{path} has no valid num_classes (expected a positive integer); "
                                        f"{_REWRITE_HINT}. Received: num_classes={value!r}")
                found[path] = value
                break
    if len(set(found.values())) > 1:
        raise ValueError(f"The shards' folders disagree on the number of classes; their labels come from "
                         f"different runs. Pass num_classes explicitly or write the records together. "
                         f"Received: {found}")
    return next(iter(found.values()), None)
