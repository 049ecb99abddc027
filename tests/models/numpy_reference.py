"""Independent channels-first (NCHW / OIHW) NumPy forward passes, written as Caffe/PyTorch compute.

They share no code with the library's converters, so a layout mistake in a converter (transposes,
flatten order, channel flip, padding side) shows up as a mismatch against these.
"""

from __future__ import annotations

import numpy as np


def conv2d(x: np.ndarray, weight: np.ndarray, bias: np.ndarray | None, stride: int, pad: int,
           groups: int = 1) -> np.ndarray:
    """`x` `(N, C, H, W)`, `weight` `(O, C / groups, kh, kw)`: symmetric zero padding, floor output size."""
    x = np.pad(x, ((0, 0), (0, 0), (pad, pad), (pad, pad)))
    out_c, in_per_group, kh, kw = weight.shape
    windows = np.lib.stride_tricks.sliding_window_view(x, (kh, kw), axis=(2, 3))[:, :, ::stride, ::stride]
    # windows: (N, C, OH, OW, kh, kw)
    outs = []
    per_out = out_c // groups
    for g in range(groups):
        part = windows[:, g * in_per_group:(g + 1) * in_per_group]
        w = weight[g * per_out:(g + 1) * per_out]
        outs.append(np.einsum("nchwij,ocij->nohw", part, w, optimize=True))
    y = np.concatenate(outs, axis=1)
    if bias is not None:
        y = y + bias[None, :, None, None]
    return y


def prelu(x: np.ndarray, slope: np.ndarray) -> np.ndarray:
    """Per-channel PReLU over axis 1."""
    shape = (1, -1) + (1,) * (x.ndim - 2)
    return np.where(x > 0, x, x * slope.reshape(shape))


def batchnorm(x: np.ndarray, gamma, beta, mean, var, eps: float = 1e-5) -> np.ndarray:
    """Inference BatchNorm over axis 1."""
    shape = (1, -1) + (1,) * (x.ndim - 2)
    return (x - mean.reshape(shape)) / np.sqrt(var.reshape(shape) + eps) * gamma.reshape(shape) + beta.reshape(shape)


def linear(x: np.ndarray, weight: np.ndarray, bias: np.ndarray | None) -> np.ndarray:
    """`x` `(N, ...)` flattened channels-first, `weight` `(out, in)`."""
    y = x.reshape(x.shape[0], -1) @ weight.T
    return y if bias is None else y + bias
