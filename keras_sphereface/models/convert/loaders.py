"""`load_checkpoint`: one entry point over the converters of the checkpoint formats."""

from __future__ import annotations

import os
from typing import Any

import keras

from keras_sphereface.models.convert.caffe import load_caffemodel
from keras_sphereface.models.convert.torch_npz import load_torch_npz

#: Checkpoint format name (the registry's `source.format`, `ksf convert FORMAT`) -> loader.
CHECKPOINT_LOADERS = {"torch-npz": load_torch_npz, "caffe": load_caffemodel}
CHECKPOINT_FORMATS = tuple(CHECKPOINT_LOADERS)


def load_checkpoint(format: str, model: keras.Model, path: str | os.PathLike, **options: Any) -> None:
    """Loads a checkpoint of another framework into `model`.

    Args:
        format: str. A key of `CHECKPOINT_LOADERS`: `"torch-npz"` or `"caffe"`.
        model: keras.Model. The matching architecture, built with `weights=None`.
        path: str or path-like. The checkpoint file.
        **options: keyword arguments of the converter (`architecture=` for torch-npz,
            `input_channel_order=` for caffe).
    """
    if format not in CHECKPOINT_LOADERS:
        raise ValueError(f"Unknown checkpoint format; use one of {list(CHECKPOINT_FORMATS)}. "
                         f"Received: format={format!r}")
    CHECKPOINT_LOADERS[format](model, path, **options)
