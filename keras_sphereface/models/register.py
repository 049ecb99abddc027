"""Your own weights under a tag of your own: `Sphere20(weights="my-casia")` in any later process.

`register_weights` checks that a `.weights.h5` file loads into the zoo model, copies it into the
weights cache (atomically) and adds an entry with its SHA-256 to the local registry
(`$KERAS_SPHEREFACE_HOME/registry.local.json`). `ksf train --tag` calls it for the final weights.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import keras

from keras_sphereface.models import registry, store
from keras_sphereface.models.zoo import get_model_spec
from keras_sphereface.utils.atomic import atomic_path, sha256_file
from keras_sphereface.version import __version__


def register_weights(
    model: str,
    tag: str,
    weights_file: str | os.PathLike,
    *,
    input_size: tuple[int, int] | None = None,
    embedding_dim: int | None = None,
    description: str = "",
    training_data: str = "",
    loss: str = "",
    lfw_accuracy: float | None = None,
    command: str | None = None,
) -> Path:
    """Registers a trained weights file as `tag` of a zoo model; returns the cached file.

    Args:
        model: str. Zoo model name, case-insensitive (`"sphere20"`, `"MobileFaceNet"`).
        tag: str. Your tag: letters, digits, `-`, `_` and `.`; not a shipped tag of that model.
        weights_file: str or path-like. A `.weights.h5` file of the embedding model (no head).
        input_size: tuple of 2 ints or None. `(height, width)` it was trained at; default the zoo's.
        embedding_dim: int or None. Embedding size; default the builder's.
        description, training_data, loss: str. Recorded in the entry.
        lfw_accuracy: float or None. A measured verification accuracy to record.
        command: str or None. The command that produced the weights.

    Returns:
        The path of the weights in the cache (`<model>_<tag>.weights.h5`).

    Raises:
        ValueError: bad tag, a shipped tag, or a file that does not load into the model.
    """
    spec = get_model_spec(model)
    if not tag or not all(c.isalnum() or c in "-_." for c in tag):
        raise ValueError(f"A tag uses letters, digits, '-', '_' and '.' only. Received: tag={tag!r}")
    source = Path(weights_file)
    if not source.is_file():
        raise ValueError(f"The weights file does not exist. Received: weights_file={os.fspath(weights_file)!r}")
    size = tuple(input_size) if input_size is not None else spec.input_size
    options = {"input_shape": (*size, 3)} | ({} if embedding_dim is None else {"embedding_dim": embedding_dim})
    built = spec.build(weights=source, **options)  # raises a clear error when the file does not fit
    target = store.cache_dir() / f"{spec.name}_{tag}.weights.h5"
    target.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(target) as tmp:
        shutil.copyfile(source, tmp)
    keras.backend.clear_session()
    registry.add_local_entry({
        "model": spec.builder_name,
        "tag": tag,
        "file": target.name,
        "sha256": sha256_file(target),
        "size": target.stat().st_size,
        "url": None,
        "input_size": list(size),
        "embedding_dim": int(built.output_shape[-1]),
        "parameters": int(built.count_params()),
        "description": description or f"{spec.builder_name} weights registered from {source.name}",
        "preprocessing": {"alignment": "see the training run's config.toml", "channel_order": "RGB",
                          "normalization": spec.preprocessing},
        "training_data": training_data or "unknown",
        "loss": loss or "unknown",
        "licence": "yours",
        "origin": {"file": os.path.abspath(source), "command": command, "keras_sphereface_version": __version__},
        "lfw": {"accuracy": lfw_accuracy, "command": None},
    })
    return target
