"""PyTorch state dicts saved as `.npz` (`numpy.savez(path, **state_dict)`) to Keras models.

Handles conv weights (OIHW), depthwise weights `(C, 1, kh, kw)`, BatchNorm (weight, bias, running
mean and variance), per-channel PReLU and Linear layers (including the reordering of a Linear that
follows the flattening of an NCHW feature map). The mapping is strict: every weighted Keras layer
must find its tensors with the right shapes and every tensor of the file must be used, otherwise a
`ValueError` lists what is missing or left over.

The file is read by `read_npz`, which never unpickles (object arrays are refused) and checks every
size the file declares against the bytes actually present before allocating anything.
"""

from __future__ import annotations

import math
import os
import zipfile
import zlib
from collections.abc import Mapping
from pathlib import Path

import keras
import numpy as np

from keras_sphereface.models.convert import layouts
from keras_sphereface.models.convert.torch_names import TORCH_LAYOUTS

# Buffers PyTorch stores that carry no weights.
_IGNORED_SUFFIXES = (".num_batches_tracked",)

#: Default cap on the total uncompressed size of an `.npz` read by `read_npz` (4 GiB; IResNet-100 is
#: about 0.25 GiB in float32).
MAX_NPZ_BYTES = 4 * 2**30
# Deflate cannot expand data more than about 1032 times: a larger claimed ratio is a corrupt header.
_MAX_DEFLATE_RATIO = 1100


class NpzError(ValueError):
    """Raised for an `.npz` file that is not a readable, pickle-free archive of arrays.

    The only error `read_npz` raises for bad bytes (truncated, corrupt or hostile files); the
    message names the file and, where known, the array and its byte offset in the file.
    """


def _read_member(archive: zipfile.ZipFile, info: zipfile.ZipInfo, where: str) -> np.ndarray:
    """One `.npy` member, its declared sizes checked before any allocation; never unpickles."""
    if info.compress_type == zipfile.ZIP_STORED and info.file_size != info.compress_size:
        raise NpzError(f"{where}: stored (uncompressed) but {info.compress_size} bytes hold {info.file_size}. "
                       f"Received: file_size={info.file_size}")
    if info.file_size > max(info.compress_size, 1) * _MAX_DEFLATE_RATIO:
        raise NpzError(f"{where}: claims {info.file_size} bytes from {info.compress_size} compressed ones, more "
                       f"than compression allows. Received: file_size={info.file_size}")
    with archive.open(info) as member:
        version = np.lib.format.read_magic(member)
        if version == (1, 0):
            shape, fortran, dtype = np.lib.format.read_array_header_1_0(member)
        elif version == (2, 0):
            shape, fortran, dtype = np.lib.format.read_array_header_2_0(member)
        else:
            raise NpzError(f"{where}: .npy format version {version} is not supported here (1.0 and 2.0 are). "
                           f"Received: version={version}")
        if dtype.hasobject:
            raise NpzError(f"{where}: holds Python objects, which would need unpickling; refused "
                           f"(save plain numeric arrays). Received: dtype={dtype}")
        nbytes = math.prod(shape) * dtype.itemsize
        left = info.file_size - member.tell()
        if nbytes != left:
            raise NpzError(f"{where}: its header promises {nbytes} bytes of {dtype} {shape}, the member holds "
                           f"{left}. Received: shape={shape}")
        data = bytearray(nbytes)
        if member.readinto(data) != nbytes:
            raise NpzError(f"{where}: the array data is cut off. Received: expected_bytes={nbytes}")
    return np.frombuffer(data, dtype=dtype).reshape(shape, order="F" if fortran else "C")


def read_npz(path: str | os.PathLike, max_bytes: int = MAX_NPZ_BYTES) -> dict[str, np.ndarray]:
    """Reads every array of an `.npz` file (`numpy.savez` / `savez_compressed`), safely.

    Unlike `np.load`, nothing is allocated before it is checked against the file: each member's
    declared size against its compressed size and the file, each `.npy` header against its
    member. Object arrays (pickles) are refused, so no code from the file ever runs.

    Args:
        path: str or path-like. The `.npz` file.
        max_bytes: int. Refuse archives whose arrays add up to more than this many bytes.

    Returns:
        dict mapping each array name (the member name without `.npy`) to an `np.ndarray`.

    Raises:
        FileNotFoundError: `path` does not exist.
        NpzError: anything else wrong with the file (a `ValueError`; file, array and offset named).
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"npz file not found. Received: path={os.fspath(path)!r}")
    size = path.stat().st_size
    failures = (zipfile.BadZipFile, zipfile.LargeZipFile, OSError, ValueError, EOFError, zlib.error,
                OverflowError, NotImplementedError, RuntimeError, KeyError, IndexError, TypeError)
    try:
        archive = zipfile.ZipFile(path)
    except failures as error:
        raise NpzError(f"{path} is not a readable .npz file (a zip archive of .npy arrays; truncated, or "
                       f"another format?): {type(error).__name__}: {error}. Received: size={size} bytes") from None
    arrays: dict[str, np.ndarray] = {}
    with archive:
        infos = archive.infolist()
        total = sum(info.file_size for info in infos)
        if total > max_bytes:
            raise NpzError(f"{path}: its arrays claim {total} bytes in all, more than max_bytes={max_bytes}. "
                           f"Received: total={total}")
        for info in infos:
            key = info.filename[:-4] if info.filename.endswith(".npy") else info.filename
            where = f"{path}, array {key!r} (zip entry at byte offset {info.header_offset})"
            if not info.filename.endswith(".npy") or key in arrays:
                reason = "not a .npy member" if key not in arrays else "a second array of that name"
                raise NpzError(f"{where}: {reason}. Received: member={info.filename!r}")
            if info.header_offset + info.compress_size > size:
                raise NpzError(f"{where}: runs past the end of the file ({size} bytes; truncated?). "
                               f"Received: compressed_size={info.compress_size}")
            try:
                arrays[key] = _read_member(archive, info, where)
            except NpzError:
                raise
            except failures as error:
                raise NpzError(f"{where}: {type(error).__name__}: {error}") from None
    return arrays


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


def _consumed_keys(prefix: str, state: Mapping[str, np.ndarray]) -> set[str]:
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
        used |= _consumed_keys(prefix, state)
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

    Raises:
        NpzError: the file is truncated, corrupt or holds pickled objects (see `read_npz`).
        ValueError: its tensors do not fit the architecture.
    """
    state = read_npz(path)
    convert_state_dict(state, model, torch_layer_names(model, architecture))
