"""Converting a checkpoint file into a verified Keras `.weights.h5` with a provenance sidecar.

Used by the resolver (a tag whose weights are converted from a source checkpoint on first use) and by
`ksf convert` (`keras_sphereface.models.conversion`).
"""

from __future__ import annotations

import os
from pathlib import Path

import keras

from keras_sphereface.models import registry, store
from keras_sphereface.models.convert.loaders import load_checkpoint
from keras_sphereface.utils.atomic import atomic_path


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
    source_sha = store.verify_file(source_path, sha256, size, what=f"{format} checkpoint")
    load_checkpoint(format, model, source_path, **(options or {}))
    target = Path(target)
    with atomic_path(target) as tmp:
        model.save_weights(tmp)
    store.write_sidecar(target, {**(record or {}), "converter": format, "source_file": Path(source_path).name,
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
    target = Path(output) if output is not None else store.cache_dir() / entry.file
    return convert_file(source.format, model, source_path, target, source.options, source.sha256,
                        source.size, {"model": entry.model, "tag": entry.tag})
