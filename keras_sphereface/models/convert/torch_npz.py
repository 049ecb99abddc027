"""PyTorch state dicts saved as `.npz` (`numpy.savez(path, **state_dict)`) to Keras models.

Handles conv weights (OIHW), depthwise weights `(C, 1, kh, kw)`, BatchNorm (weight, bias, running
mean and variance), per-channel PReLU and Linear layers (including the reordering of a Linear that
follows the flattening of an NCHW feature map). The mapping is strict: every weighted Keras layer
must find its tensors with the right shapes and every tensor of the file must be used, otherwise a
`ValueError` lists what is missing or left over.
"""

from __future__ import annotations

import os
from collections.abc import Mapping

import keras
import numpy as np

from keras_sphereface.models.convert import layouts
from keras_sphereface.models.convert.torch_names import TORCH_LAYOUTS

# Buffers PyTorch stores that carry no weights.
_IGNORED_SUFFIXES = (".num_batches_tracked",)


def torch_layer_names(model: keras.Model, architecture: str) -> dict[str, str]:
    """Keras layer name -> PyTorch module prefix for a supported architecture.

    Args:
        model: keras.Model. A model built by `MobileFaceNet` or `IResNet*`.
        architecture: str. A key of `torch_names.TORCH_LAYOUTS`: `"mobilefacenet"` or `"iresnet"`.
    """
    if architecture not in TORCH_LAYOUTS:
        raise ValueError(
            f"No PyTorch name mapping for this architecture; use one of {sorted(TORCH_LAYOUTS)}. "
            f"Received: architecture={architecture!r}"
        )
    return TORCH_LAYOUTS[architecture](model)


def _layer_tensors(layer, prefix: str, state: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    """The Keras weight values of `layer` from the PyTorch tensors under `prefix`, by Keras role."""

    def get(suffix):
        key = f"{prefix}.{suffix}"
        if key not in state:
            raise ValueError(f"Layer {layer.name!r} needs {key!r}, absent from the state dict. "
                             f"Received: keys under {prefix!r}: {sorted(k for k in state if k.startswith(prefix))}")
        return np.asarray(state[key], dtype=np.float32)

    kind = layer.__class__.__name__
    if isinstance(layer, keras.layers.DepthwiseConv2D):
        values = {"kernel": layouts.depthwise_to_keras(get("weight"))}
    elif isinstance(layer, keras.layers.Conv2D):
        values = {"kernel": layouts.conv_to_keras(get("weight"))}
    elif isinstance(layer, keras.layers.Dense):
        values = {"kernel": layouts.dense_to_keras(get("weight"), layouts.flattened_input_shape(layer))}
    elif isinstance(layer, keras.layers.PReLU):
        return {"alpha": get("weight").reshape(tuple(layer.alpha.shape))}
    elif isinstance(layer, keras.layers.BatchNormalization):
        values = {"moving_mean": get("running_mean"), "moving_variance": get("running_var")}
        if layer.scale:
            values["gamma"] = get("weight")
        elif f"{prefix}.weight" in state and not np.allclose(get("weight"), 1.0):
            raise ValueError(f"Layer {layer.name!r} has a fixed scale of 1 but {prefix}.weight is not all "
                             f"ones. Received: {prefix}.weight={get('weight')[:4]}...")
        if layer.center:
            values["beta"] = get("bias")
        return values
    else:
        raise ValueError(f"Cannot convert PyTorch tensors into a {kind} layer. Received: layer={layer.name!r}")
    if layer.use_bias:
        values["bias"] = get("bias")
    return values


def _consumed_keys(layer, prefix: str, state: Mapping[str, np.ndarray]) -> set[str]:
    suffixes = ("weight", "bias", "running_mean", "running_var")
    return {f"{prefix}.{s}" for s in suffixes if f"{prefix}.{s}" in state}


def convert_state_dict(state: Mapping[str, np.ndarray], model: keras.Model, names: Mapping[str, str]) -> None:
    """Sets every weighted layer of `model` from a PyTorch state dict.

    Args:
        state: mapping of str to np.ndarray. PyTorch parameter/buffer name -> tensor.
        model: keras.Model. The Keras architecture; its weights are overwritten.
        names: mapping of str to str. Keras layer name -> PyTorch module prefix (see `torch_layer_names`).

    Raises:
        ValueError: a tensor is missing, has the wrong shape, or is left unused.
    """
    used: set[str] = set()
    for layer in model.layers:
        if not layer.weights:
            continue
        if layer.name not in names:
            raise ValueError(f"No PyTorch name for Keras layer {layer.name!r}. Received: names={len(names)} entries")
        prefix = names[layer.name]
        values = _layer_tensors(layer, prefix, state)
        ordered = []
        for variable in layer.weights:
            role = variable.path.rsplit("/", 1)[-1]
            value = values[role]
            if tuple(value.shape) != tuple(variable.shape):
                raise ValueError(
                    f"Shape mismatch for {layer.name}.{role} (from {prefix}): Keras wants "
                    f"{tuple(variable.shape)}. Received: shape={tuple(value.shape)}"
                )
            ordered.append(value)
        layer.set_weights(ordered)
        used |= _consumed_keys(layer, prefix, state)
    unused = sorted(k for k in state if k not in used and not k.endswith(_IGNORED_SUFFIXES))
    if unused:
        raise ValueError(f"{len(unused)} tensors of the state dict were not used: wrong architecture? "
                         f"Received: unused={unused[:10]}")


def load_torch_npz(model: keras.Model, path: str | os.PathLike, architecture: str) -> None:
    """Loads a PyTorch state dict saved as `.npz` into `model`.

    Args:
        model: keras.Model. Built with `weights=None`, matching the checkpoint.
        path: str or path-like. The `.npz` file, one array per state-dict name.
        architecture: str. `"mobilefacenet"` or `"iresnet"` (how names map, see `torch_layer_names`).
    """
    with np.load(path) as data:
        state = {key: data[key] for key in data.files}
    convert_state_dict(state, model, torch_layer_names(model, architecture))
