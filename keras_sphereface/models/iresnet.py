"""IResNet-18/34/50/100: the improved ResNets of the ArcFace paper (Deng et al., 2019).

The backbone most face-recognition models are trained on today (insightface `arcface_torch`). Layer by
layer as that implementation:

- stem: 3x3 conv stride 1 (no bias), BN, PReLU (64 channels);
- four stages of 64/128/256/512 channels; each unit (`IBasicBlock`) is
  `BN -> 3x3 conv -> BN -> PReLU -> 3x3 conv (stride s) -> BN` plus the shortcut (identity, or a 1x1
  conv with stride s and BN when the shape changes), no activation after the sum; the first unit of
  every stage has stride 2;
- embedding head "BN-Dropout-FC-BN": BN over the 7x7x512 map, flatten, dropout, `fc` to the
  embedding size, BatchNorm1d with its scale fixed at 1 (`features`).

All BatchNorms use epsilon 1e-5 (PyTorch's). Strided convolutions pad one pixel on every side (as
PyTorch). Layer names mirror the PyTorch module names with `_` for `.` (`layer2_0_conv1`,
`layer2_0_downsample_conv`, `features`), so `convert.torch_names` maps an insightface state dict onto
the model. No pretrained IResNet weights are registered yet.
"""

from __future__ import annotations

import os
from collections.abc import Sequence

import keras
import numpy as np
from numpy.typing import ArrayLike

from keras_sphereface.models import _common
from keras_sphereface.models.preprocessing import scale_pixels
from keras_sphereface.models.resolver import check_weights_argument, load_model_weights
from keras_sphereface.utils.types import Tensor

BN_EPSILON = 1e-5
STAGE_FILTERS = (64, 128, 256, 512)
IRESNET_UNITS = {
    "iresnet18": (2, 2, 2, 2),
    "iresnet34": (3, 4, 6, 3),
    "iresnet50": (3, 4, 14, 3),
    "iresnet100": (3, 13, 30, 3),
}


# Registered (one name per family), so a `.keras` file with `Lambda(preprocess_input)` loads in safe mode.
@keras.saving.register_keras_serializable(package="keras_sphereface", name="iresnet_preprocess_input")
def preprocess_input(x: ArrayLike | Tensor) -> np.ndarray | Tensor:
    """Preprocesses aligned RGB faces for IResNet models: `(x - 127.5) / 128`.

    (insightface divides by 127.5; the difference is a 0.4% rescaling that BN absorbs, and one
    normalization across the zoo keeps pipelines interchangeable.)

    Args:
        x: array-like or tensor. Aligned faces `(batch_size, 112, 112, 3)`, RGB, `[0, 255]`.

    Returns:
        float32 array or tensor of the same shape.
    """
    return scale_pixels(x)


def _bn(name: str, scale: bool = True):
    return keras.layers.BatchNormalization(epsilon=BN_EPSILON, momentum=0.9, scale=scale, name=name)


def _conv(x, filters: int, kernel_size: int, strides: int, name: str):
    x, padding = _common.pad_like_caffe(x, kernel_size, strides, name)
    return keras.layers.Conv2D(
        filters, kernel_size, strides=strides, padding=padding, use_bias=False,
        kernel_initializer=keras.initializers.RandomNormal(stddev=0.1), name=name,
    )(x)


def _basic_block(x, filters: int, strides: int, name: str):
    shortcut = x
    if strides != 1 or x.shape[-1] != filters:
        shortcut = _conv(x, filters, 1, strides, f"{name}_downsample_conv")
        shortcut = _bn(f"{name}_downsample_bn")(shortcut)
    x = _bn(f"{name}_bn1")(x)
    x = _conv(x, filters, 3, 1, f"{name}_conv1")
    x = _bn(f"{name}_bn2")(x)
    x = _common.prelu(f"{name}_prelu")(x)
    x = _conv(x, filters, 3, strides, f"{name}_conv2")
    x = _bn(f"{name}_bn3")(x)
    return keras.layers.Add(name=f"{name}_add")([shortcut, x])


def IResNet(
    units_per_stage: Sequence[int],
    weights: str | os.PathLike | None = None,
    input_shape: Sequence[int] = (112, 112, 3),
    embedding_dim: int = 512,
    dropout: float = 0.0,
    name: str = "iresnet",
    *,
    registry_model: str | None = None,
) -> keras.Model:
    """Builds an IResNet embedding model.

    Args:
        units_per_stage: sequence of 4 positive ints. `IBasicBlock`s per stage, e.g. `(3, 4, 14, 3)`.
        weights: None, str or path-like. None, a registry tag (with `registry_model`), or a
            `.weights.h5` path.
        input_shape: tuple of int. `(height, width, 3)`, multiples of 16; `(112, 112, 3)` as insightface.
        embedding_dim: int. Size of `fc` and of the output.
        dropout: float. Dropout rate before `fc` (insightface: 0 for arcface_torch, 0.4 in older recipes).
        name: str. Model name.
        registry_model: str or None. Builder name under which `weights` tags are looked up.

    Returns:
        A `keras.Model` mapping preprocessed RGB faces to embeddings `(batch_size, embedding_dim)`, float32.
    """
    units = tuple(units_per_stage)
    if len(units) != 4 or any(not isinstance(u, int) or u < 1 for u in units):
        raise ValueError(f"units_per_stage must be 4 positive ints. Received: units_per_stage={units_per_stage!r}")
    if not 0.0 <= dropout < 1.0:
        raise ValueError(f"dropout must be in [0, 1). Received: dropout={dropout!r}")
    shape = _common.check_input_shape(input_shape, minimum=16, divisor=16, name=name)
    entry = check_weights_argument(weights, registry_model, shape)
    _common.check_embedding_dim(embedding_dim)

    inputs = keras.Input(shape=shape, name="image")
    x = _conv(inputs, 64, 3, 1, "conv1")
    x = _bn("bn1")(x)
    x = _common.prelu("prelu")(x)
    for stage, (filters, count) in enumerate(zip(STAGE_FILTERS, units, strict=True), start=1):
        for unit in range(count):
            x = _basic_block(x, filters, 2 if unit == 0 else 1, f"layer{stage}_{unit}")
    x = _bn("bn2")(x)
    x = keras.layers.Flatten(name="flatten")(x)
    x = keras.layers.Dropout(dropout, name="dropout")(x)
    x = keras.layers.Dense(embedding_dim, name="fc")(x)
    x = _bn("features", scale=False)(x)
    outputs = _common.float32_embedding(x)
    model = keras.Model(inputs, outputs, name=name)
    if weights is not None:
        load_model_weights(model, weights, entry)
    return model


def _named(builder_name: str, weights, input_shape, embedding_dim, dropout, name) -> keras.Model:
    return IResNet(IRESNET_UNITS[builder_name.lower()], weights=weights, input_shape=input_shape,
                   embedding_dim=embedding_dim, dropout=dropout, name=name, registry_model=builder_name)


def IResNet18(weights: str | os.PathLike | None = None, input_shape: Sequence[int] = (112, 112, 3),
              embedding_dim: int = 512, dropout: float = 0.0, name: str = "iresnet18") -> keras.Model:
    """IResNet-18: units per stage `(2, 2, 2, 2)`. Arguments as `IResNet`."""
    return _named("IResNet18", weights, input_shape, embedding_dim, dropout, name)


def IResNet34(weights: str | os.PathLike | None = None, input_shape: Sequence[int] = (112, 112, 3),
              embedding_dim: int = 512, dropout: float = 0.0, name: str = "iresnet34") -> keras.Model:
    """IResNet-34: units per stage `(3, 4, 6, 3)`. Arguments as `IResNet`."""
    return _named("IResNet34", weights, input_shape, embedding_dim, dropout, name)


def IResNet50(weights: str | os.PathLike | None = None, input_shape: Sequence[int] = (112, 112, 3),
              embedding_dim: int = 512, dropout: float = 0.0, name: str = "iresnet50") -> keras.Model:
    """IResNet-50: units per stage `(3, 4, 14, 3)`. Arguments as `IResNet`."""
    return _named("IResNet50", weights, input_shape, embedding_dim, dropout, name)


def IResNet100(weights: str | os.PathLike | None = None, input_shape: Sequence[int] = (112, 112, 3),
               embedding_dim: int = 512, dropout: float = 0.0, name: str = "iresnet100") -> keras.Model:
    """IResNet-100: units per stage `(3, 13, 30, 3)`. Arguments as `IResNet`."""
    return _named("IResNet100", weights, input_shape, embedding_dim, dropout, name)
