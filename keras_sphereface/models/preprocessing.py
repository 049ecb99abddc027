"""Pixel preprocessing of the model zoo: the one home of the `(x - 127.5) / 128` scaling.

Every model here takes aligned RGB faces scaled by `scale_pixels`; each family re-exports it as its
`preprocess_input`. `PREPROCESSING` names the pixel mappings a user can choose for models of other
origins (`ksf eval --preprocess`, a SavedModel that expects raw pixels).
"""

from __future__ import annotations

from collections.abc import Callable

import keras
import numpy as np
from numpy.typing import ArrayLike

from keras_sphereface.utils.types import Tensor

#: `(x - PIXEL_MEAN) / PIXEL_SCALE`: the normalization of the SphereFace release and of the shared weights.
PIXEL_MEAN = 127.5
PIXEL_SCALE = 128.0


def scale_pixels(x: ArrayLike | Tensor) -> np.ndarray | Tensor:
    """Maps RGB pixel values in `[0, 255]` to about `[-1, 1]` by `(x - 127.5) / 128`.

    Args:
        x: array-like or tensor. Images `(..., height, width, 3)`, RGB, any numeric dtype.

    Returns:
        A float32 NumPy array for NumPy/array-like input, a float32 tensor for tensor input.
    """
    if keras.ops.is_tensor(x):
        return (keras.ops.cast(x, "float32") - PIXEL_MEAN) / PIXEL_SCALE
    return (np.asarray(x, dtype=np.float32) - np.float32(PIXEL_MEAN)) / np.float32(PIXEL_SCALE)


def raw_pixels(x: ArrayLike | Tensor) -> np.ndarray | Tensor:
    """Returns the pixels as float32 in `[0, 255]` (for models that scale inside their graph)."""
    if keras.ops.is_tensor(x):
        return keras.ops.cast(x, "float32")
    return np.asarray(x, dtype=np.float32)


def unit_pixels(x: ArrayLike | Tensor) -> np.ndarray | Tensor:
    """Maps pixels to `[0, 1]` by `x / 255`."""
    if keras.ops.is_tensor(x):
        return keras.ops.cast(x, "float32") / 255.0
    return np.asarray(x, dtype=np.float32) / np.float32(255.0)


#: Named pixel mappings `(batch, h, w, 3)` in `[0, 255]` -> float32; `"ksf"` is every zoo model's.
PREPROCESSING: dict[str, Callable] = {"ksf": scale_pixels, "none": raw_pixels, "unit": unit_pixels}
PREPROCESSING_NAMES = tuple(PREPROCESSING)


def get_preprocessing(name: str) -> Callable:
    """The pixel mapping called `name` (a key of `PREPROCESSING`)."""
    if name not in PREPROCESSING:
        raise ValueError(f"Unknown preprocessing; expected one of {list(PREPROCESSING_NAMES)}. "
                         f"Received: preprocess={name!r}")
    return PREPROCESSING[name]
