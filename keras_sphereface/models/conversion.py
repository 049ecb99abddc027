"""`convert_checkpoint`: a zoo model's checkpoint from another framework -> Keras weights (`ksf convert`)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from keras_sphereface.models import registry
from keras_sphereface.models.convert.files import convert_file, convert_source
from keras_sphereface.models.zoo import ZOO, get_model_spec


def convert_checkpoint(
    format: str,
    model_name: str,
    source: str | os.PathLike,
    tag: str | None = None,
    output: str | os.PathLike | None = None,
    input_shape: tuple[int, int, int] | None = None,
    **options: Any,
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
    if model_name.lower() not in ZOO:
        raise ValueError(f"Unknown model; use one of {list(ZOO)}. Received: model_name={model_name!r}")
    spec = get_model_spec(model_name)
    name, builder = spec.builder_name, spec.builder
    if tag is not None:
        entry = registry.get_entry(name, tag)
        if entry.source is None or entry.source.format != format:
            raise ValueError(f"Registry entry {name}/{tag} is not converted from a {format} checkpoint. "
                             f"Received: format={format!r}")
        model = builder(input_shape=(*entry.input_size, 3))
        return convert_source(entry, source, model, output)
    if output is None:
        raise ValueError("Without a registry tag, give the output .weights.h5 path. Received: output=None")
    if not str(output).endswith(".weights.h5"):
        raise ValueError(f"The output must end in .weights.h5. Received: output={os.fspath(output)!r}")
    model = builder() if input_shape is None else builder(input_shape=tuple(input_shape))
    if format == "torch-npz" and "architecture" not in options:
        if spec.torch_layout is None:
            raise ValueError(f"{name} has no PyTorch checkpoint layout; it converts from "
                             f"{spec.checkpoint_format or 'no other format'}. Received: format={format!r}")
        options["architecture"] = spec.torch_layout
    return convert_file(format, model, source, output, options, record={"model": name, "tag": None})
