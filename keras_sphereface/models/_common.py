"""Building blocks shared by the model families: input checks, Caffe/PyTorch padding, output head."""

from __future__ import annotations

from collections.abc import Sequence

import keras

from keras_sphereface.models.prelu import PReLU


def check_input_shape(input_shape: Sequence[int], minimum: int, divisor: int, name: str) -> tuple:
    """Validates a `(height, width, 3)` input shape and returns it as a tuple.

    Args:
        input_shape: sequence of int. `(height, width, channels)`.
        minimum: int. Smallest allowed height and width, in pixels.
        divisor: int. Height and width must be multiples of it (the network's total stride).
        name: str. Model name for the error message.
    """
    shape = tuple(input_shape) if input_shape is not None else ()
    if (
        len(shape) != 3
        or shape[2] != 3
        or any(not isinstance(v, int) or v < minimum or v % divisor for v in shape[:2])
    ):
        raise ValueError(
            f"{name} needs input_shape (height, width, 3) with height and width multiples of "
            f"{divisor} and at least {minimum}. Received: input_shape={input_shape!r}"
        )
    return shape


def check_embedding_dim(embedding_dim: int) -> int:
    """Validates `embedding_dim` (a positive int)."""
    if not isinstance(embedding_dim, int) or isinstance(embedding_dim, bool) or embedding_dim < 1:
        raise ValueError(f"embedding_dim must be a positive int. Received: embedding_dim={embedding_dim!r}")
    return embedding_dim


def pad_like_caffe(x: keras.KerasTensor, kernel_size: int, strides: int, name: str) -> tuple[keras.KerasTensor, str]:
    """Pads `(kernel_size - 1) // 2` on every side, as Caffe and PyTorch do, when striding.

    Keras "same" padding puts the extra row/column of a stride-2 convolution at the bottom/right
    only, which shifts the sampling grid against Caffe/PyTorch weights. For stride 1 "same" is
    already symmetric, so no layer is added and the caller uses `padding="same"`.

    Returns:
        `(tensor, padding)`: the (possibly padded) tensor and the padding string for the conv.
    """
    if strides == 1:
        return x, "same"
    pad = (kernel_size - 1) // 2
    if pad == 0:
        return x, "valid"
    return keras.layers.ZeroPadding2D(pad, name=f"{name}_pad")(x), "valid"


def float32_embedding(x: keras.KerasTensor, name: str = "embedding") -> keras.KerasTensor:
    """Passes `x` through a float32 linear layer, so the output is float32 under mixed precision."""
    return keras.layers.Activation("linear", dtype="float32", name=name)(x)


def prelu(name: str, init: float = 0.25) -> PReLU:
    """Per-channel PReLU (one slope per channel, shared over height and width), slopes start at 0.25.

    `keras_sphereface.models.prelu.PReLU`: Keras' layer with a cheaper training gradient.
    """
    return PReLU(
        alpha_initializer=keras.initializers.Constant(init), shared_axes=[1, 2], name=name
    )
