"""Converters from other frameworks' checkpoints to keras_sphereface models.

- `torch_npz`: PyTorch state dicts saved as `.npz` (MobileFaceNet, IResNet).
- `caffe`: Caffe `.caffemodel` files (SphereNet), read and written by the small protobuf
  wire-format codec in `caffe_proto` (no Caffe or protobuf dependency).
"""

from __future__ import annotations

import os

import keras


def load_checkpoint(format: str, model: keras.Model, path: str | os.PathLike, **options) -> None:
    """Loads a checkpoint of another framework into `model`.

    Args:
        format: str. `"torch-npz"` or `"caffe"` (the registry's `source.format`).
        model: keras.Model. The matching architecture, built with `weights=None`.
        path: str or path-like. The checkpoint file.
        **options: keyword arguments of the converter (`architecture=` for torch-npz,
            `input_channel_order=` for caffe).
    """
    if format == "torch-npz":
        from keras_sphereface.models.convert.torch_npz import load_torch_npz

        load_torch_npz(model, path, **options)
    elif format == "caffe":
        from keras_sphereface.models.convert.caffe import load_caffemodel

        load_caffemodel(model, path, **options)
    else:
        raise ValueError(f"Unknown checkpoint format; use 'torch-npz' or 'caffe'. Received: format={format!r}")


__all__ = ["load_checkpoint"]
