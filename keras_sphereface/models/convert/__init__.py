"""Converters from other frameworks' checkpoints to keras_sphereface models.

- `torch_npz`: PyTorch state dicts saved as `.npz` (MobileFaceNet, IResNet).
- `caffe`: Caffe `.caffemodel` files (SphereNet), read and written by the small protobuf
  wire-format codec in `caffe_proto` (no Caffe or protobuf dependency).
"""

from __future__ import annotations

import os
from pathlib import Path

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


_BUILDERS = ("Sphere4", "Sphere10", "Sphere20", "Sphere36", "Sphere64", "MobileFaceNet",
             "IResNet18", "IResNet34", "IResNet50", "IResNet100")


def _builder(model_name: str):
    from keras_sphereface import models

    names = {name.lower(): name for name in _BUILDERS}
    if model_name.lower() not in names:
        raise ValueError(f"Unknown model; use one of {sorted(names)}. Received: model_name={model_name!r}")
    name = names[model_name.lower()]
    return name, getattr(models, name)


def convert_checkpoint(
    format: str,
    model_name: str,
    source: str | os.PathLike,
    tag: str | None = None,
    output: str | os.PathLike | None = None,
    input_shape: tuple[int, int, int] | None = None,
    **options,
) -> Path:
    """Converts a checkpoint into a Keras `.weights.h5` file; what `ksf convert` runs.

    With `tag`, the registry entry `(model_name, tag)` decides the input size and converter options,
    the source's registered SHA-256 is verified, and the result goes into the weights cache (or
    `output`) with a sidecar recording both checksums, so `Model(weights=tag)` then loads it.
    Without `tag`, `output` is required and `input_shape`/`options` come from the caller.

    Args:
        format: str. `"torch-npz"` or `"caffe"`.
        model_name: str. Builder name, case-insensitive: `"mobilefacenet"`, `"sphere20"`, `"iresnet50"`...
        source: str or path-like. The checkpoint (`.npz` state dict or `.caffemodel`).
        tag: str or None. Registry tag (e.g. `"casia"`).
        output: str, path-like or None. Output `.weights.h5`; default the cache entry for `tag`.
        input_shape: tuple of int or None. `(height, width, 3)`; default the entry's, else the builder's.
        **options: converter options when there is no tag (`architecture=`, `input_channel_order=`).

    Returns:
        The path of the written `.weights.h5`.
    """
    from keras_sphereface.models import registry, weights

    name, builder = _builder(model_name)
    if tag is not None:
        entry = registry.get_entry(name, tag)
        if entry.source is None or entry.source.format != format:
            raise ValueError(f"Registry entry {name}/{tag} is not converted from a {format} checkpoint. "
                             f"Received: format={format!r}")
        model = builder(input_shape=(*entry.input_size, 3))
        return weights.convert_source(entry, source, model, output)
    if output is None:
        raise ValueError("Without a registry tag, give the output .weights.h5 path. Received: output=None")
    if not str(output).endswith(".weights.h5"):
        raise ValueError(f"The output must end in .weights.h5. Received: output={os.fspath(output)!r}")
    model = builder() if input_shape is None else builder(input_shape=tuple(input_shape))
    if format == "torch-npz" and "architecture" not in options:
        options["architecture"] = "mobilefacenet" if name == "MobileFaceNet" else "iresnet"
    return weights.convert_file(format, model, source, output, options, record={"model": name, "tag": None})


__all__ = ["convert_checkpoint", "load_checkpoint"]
