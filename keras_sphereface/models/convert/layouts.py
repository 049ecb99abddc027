"""Tensor layouts between channels-first frameworks (Caffe, PyTorch) and Keras, both ways.

Caffe and PyTorch store a conv kernel as `(out, in, kh, kw)` (OIHW), a depthwise kernel as
`(channels, 1, kh, kw)`, a fully connected weight as `(out, in)`, and flatten feature maps in
`(channels, height, width)` order. Keras uses `(kh, kw, in, out)`, `(kh, kw, channels, 1)`,
`(in, out)` and flattens `(height, width, channels)`.
"""

from __future__ import annotations

from collections.abc import Sequence

import keras
import numpy as np


def conv_to_keras(weight: np.ndarray) -> np.ndarray:
    """OIHW `(out, in, kh, kw)` -> Keras `(kh, kw, in, out)`."""
    return np.ascontiguousarray(np.transpose(weight, (2, 3, 1, 0)))


def conv_from_keras(kernel: np.ndarray) -> np.ndarray:
    """Keras `(kh, kw, in, out)` -> OIHW `(out, in, kh, kw)`."""
    return np.ascontiguousarray(np.transpose(kernel, (3, 2, 0, 1)))


def depthwise_to_keras(weight: np.ndarray) -> np.ndarray:
    """Depthwise `(channels * multiplier, 1, kh, kw)` -> Keras `(kh, kw, channels, multiplier)`.

    Only multiplier 1 occurs in the supported models, where both orders agree.
    """
    return np.ascontiguousarray(np.transpose(weight, (2, 3, 0, 1)))


def dense_to_keras(weight: np.ndarray, flattened_hwc: Sequence[int] | None = None) -> np.ndarray:
    """A fully connected `(out, in)` weight -> Keras `(in, out)`.

    Args:
        weight: np.ndarray. `(out, in)`.
        flattened_hwc: sequence of 3 ints or None. When the layer's input is a feature map flattened by
            Keras' `Flatten`, its `(height, width, channels)`: the input axis is then reordered from
            the channels-first flattening `(C, H, W)` of Caffe/PyTorch to Keras' `(H, W, C)`.
    """
    out = weight.shape[0]
    if flattened_hwc is not None:
        h, w, c = flattened_hwc
        weight = weight.reshape(out, c, h, w).transpose(0, 2, 3, 1).reshape(out, h * w * c)
    return np.ascontiguousarray(weight.T)


def dense_from_keras(kernel: np.ndarray, flattened_hwc: Sequence[int] | None = None) -> np.ndarray:
    """Keras `(in, out)` -> `(out, in)` with channels-first flattening; inverse of `dense_to_keras`."""
    weight = kernel.T
    out = weight.shape[0]
    if flattened_hwc is not None:
        h, w, c = flattened_hwc
        weight = weight.reshape(out, h, w, c).transpose(0, 3, 1, 2).reshape(out, c * h * w)
    return np.ascontiguousarray(weight)


def flattened_input_shape(layer: keras.layers.Layer) -> tuple[int, int, int] | None:
    """`(height, width, channels)` of the map a `Flatten` feeds into `layer` (in a functional model), or None.

    Looks through layers that keep the order of the values (Dropout, activations) between the
    Flatten and `layer`.
    """
    parent = layer.input._keras_history.operation
    while parent.__class__.__name__ in ("Dropout", "Activation"):
        parent = parent.input._keras_history.operation
    if parent.__class__.__name__ != "Flatten" or len(parent.input.shape) != 4:
        return None
    return tuple(int(v) for v in parent.input.shape[1:])
