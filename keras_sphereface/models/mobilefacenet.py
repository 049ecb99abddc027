"""MobileFaceNet (Chen et al., 2018): a 1M-parameter, CPU-friendly face-embedding network.

Structure, as the shared pretrained weights (`mobilefacenet-casia`, PyTorch) have it:

- `conv1`: 3x3 conv stride 2, 64 channels, BN, PReLU; `dw_conv1`: 3x3 depthwise, BN, PReLU;
- 15 inverted-residual bottlenecks `block{i}`: 1x1 expand conv, BN, PReLU; 3x3 depthwise conv
  (stride s), BN, PReLU; 1x1 project conv, BN (linear); identity added when the stride is 1 and the
  channel counts match. Groups (expansion t, channels c, repeats n, first stride s):
  `(2, 64, 5, 2), (4, 128, 1, 2), (2, 128, 6, 1), (4, 128, 1, 2), (2, 128, 2, 1)`;
- `conv2`: 1x1 conv to 512, BN, PReLU; `linear7`: global depthwise conv over the whole 7x6 (or 7x7)
  map, BN; `linear1`: 1x1 conv to the embedding size, BN; flatten.

Convolutions have no bias; BatchNorm epsilon is 1e-5 (PyTorch's). Strided convolutions pad one pixel on
every side (as PyTorch), which Keras "same" padding would not do. Layer names (`conv1_conv`,
`block3_dw_bn`, `linear1_bn`, ...) are the weight-file contract; `convert.torch_names` maps them to the
PyTorch state-dict prefixes.
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

# (expansion t, output channels c, repeats n, stride of the first repeat s)
BOTTLENECK_GROUPS = ((2, 64, 5, 2), (4, 128, 1, 2), (2, 128, 6, 1), (4, 128, 1, 2), (2, 128, 2, 1))


# Registered (one name per family), so a `.keras` file with `Lambda(preprocess_input)` loads in safe mode.
@keras.saving.register_keras_serializable(package="keras_sphereface", name="mobilefacenet_preprocess_input")
def preprocess_input(x: ArrayLike | Tensor) -> np.ndarray | Tensor:
    """Preprocesses aligned RGB faces for MobileFaceNet: `(x - 127.5) / 128`.

    Args:
        x: array-like or tensor. Aligned faces `(batch_size, 112, 96, 3)` (or 112x112), RGB, `[0, 255]`.

    Returns:
        float32 array or tensor of the same shape.
    """
    return scale_pixels(x)


def _bn(name: str):
    return keras.layers.BatchNormalization(epsilon=BN_EPSILON, momentum=0.9, name=name)


def _conv_block(x, filters: int, kernel_size, strides: int, name: str, depthwise: bool = False,
                linear: bool = False, padding: str | None = None):
    """conv (no bias) -> BN -> PReLU (omitted when `linear`); layers `{name}_conv/_bn/_prelu`."""
    if padding is None:
        x, padding = _common.pad_like_caffe(x, kernel_size, strides, name)
    if depthwise:
        x = keras.layers.DepthwiseConv2D(kernel_size, strides=strides, padding=padding, use_bias=False,
                                         name=f"{name}_conv")(x)
    else:
        x = keras.layers.Conv2D(filters, kernel_size, strides=strides, padding=padding, use_bias=False,
                                name=f"{name}_conv")(x)
    x = _bn(f"{name}_bn")(x)
    return x if linear else _common.prelu(f"{name}_prelu")(x)


def _bottleneck(x, expansion: int, filters: int, strides: int, index: int):
    name = f"block{index}"
    in_channels = x.shape[-1]
    shortcut = x
    x = _conv_block(x, in_channels * expansion, 1, 1, f"{name}_expand")
    x = _conv_block(x, None, 3, strides, f"{name}_dw", depthwise=True)
    x = _conv_block(x, filters, 1, 1, f"{name}_project", linear=True)
    if strides == 1 and in_channels == filters:
        x = keras.layers.Add(name=f"{name}_add")([shortcut, x])
    return x


def MobileFaceNet(
    weights: str | os.PathLike | None = None,
    input_shape: Sequence[int] = (112, 96, 3),
    embedding_dim: int = 128,
    name: str = "mobilefacenet",
) -> keras.Model:
    """Builds MobileFaceNet.

    Args:
        weights: None, str or path-like. None (random initialization), `"casia"` (CASIA-WebFace,
            ArcFace loss, 112x96 input; see `pretrained/README.md`), or a `.weights.h5` path.
        input_shape: tuple of int. `(height, width, 3)`, multiples of 16; `(112, 96, 3)` or `(112, 112, 3)`.
        embedding_dim: int. Embedding size (128 in the paper).
        name: str. Model name.

    Returns:
        A `keras.Model` mapping preprocessed RGB faces `(batch_size, height, width, 3)` (see
        `preprocess_input`) to embeddings `(batch_size, embedding_dim)`, float32, not normalized.
    """
    shape = _common.check_input_shape(input_shape, minimum=32, divisor=16, name=name)
    entry = check_weights_argument(weights, "MobileFaceNet", shape)
    _common.check_embedding_dim(embedding_dim)

    inputs = keras.Input(shape=shape, name="image")
    x = _conv_block(inputs, 64, 3, 2, "conv1")
    x = _conv_block(x, None, 3, 1, "dw_conv1", depthwise=True)
    index = 0
    for expansion, filters, repeats, first_stride in BOTTLENECK_GROUPS:
        for repeat in range(repeats):
            x = _bottleneck(x, expansion, filters, first_stride if repeat == 0 else 1, index)
            index += 1
    x = _conv_block(x, 512, 1, 1, "conv2")
    # Global depthwise convolution: the kernel covers the whole final map (7x6 at 112x96).
    x = _conv_block(x, None, tuple(x.shape[1:3]), 1, "linear7", depthwise=True, linear=True,
                    padding="valid")
    x = _conv_block(x, embedding_dim, 1, 1, "linear1", linear=True)
    x = keras.layers.Flatten(name="flatten")(x)
    outputs = _common.float32_embedding(x)
    model = keras.Model(inputs, outputs, name=name)
    if weights is not None:
        load_model_weights(model, weights, entry)
    return model
