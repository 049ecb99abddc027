"""SphereNet (Sphere-4/10/20/36/64): the residual CNNs of the SphereFace release, layer for layer.

Architecture (SphereFace, Liu et al. 2017, `sphereface_deploy.prototxt`): four stages of 64, 128, 256
and 512 channels. Each stage starts with a 3x3 stride-2 convolution padded by 1 on every side (as Caffe
pads) and a per-channel PReLU, followed by N residual units `[3x3 conv, PReLU, 3x3 conv, PReLU] + x`.
No BatchNorm. The flattened last feature map goes through `fc5 = Dense(512)` without activation.

Layer names are the Caffe layer names (`conv1_1`, `relu1_1`, `conv1_2`, ..., `res1_3`, ..., `fc5`), so a
caffemodel maps onto the Keras model by name. They are the weight-file contract: do not rename them.

Initialization as Caffe: "xavier" (Caffe's fan-in variant, i.e. uniform in `±sqrt(3 / fan_in)`) for the
stride-2 convolutions and fc5; Gaussian with std 0.01 for the residual-unit convolutions, whose biases
are zero and frozen (Caffe gives them `lr_mult: 0`). Caffe also trains the other biases at twice the
learning rate (`lr_mult: 2`); that is an optimizer setting and is not part of the model.
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

STAGE_FILTERS = (64, 128, 256, 512)

# Residual units per stage of the five depths of the paper.
SPHERE_UNITS = {
    "sphere4": (0, 0, 0, 0),
    "sphere10": (0, 1, 2, 0),
    "sphere20": (1, 2, 4, 1),
    "sphere36": (2, 4, 8, 2),
    "sphere64": (3, 8, 16, 3),
}


# Registered (one name per family), so a `.keras` file with `Lambda(preprocess_input)` loads in safe mode.
@keras.saving.register_keras_serializable(package="keras_sphereface", name="sphere_preprocess_input")
def preprocess_input(x: ArrayLike | Tensor) -> np.ndarray | Tensor:
    """Preprocesses aligned RGB faces for SphereNet models: `(x - 127.5) / 128`.

    The models take RGB. The original Caffe Sphere-20 was trained on BGR input; its converter
    (`keras_sphereface.models.convert.caffe`) reverses the input channels of `conv1_1` instead, so
    users never feed BGR.

    Args:
        x: array-like or tensor. Aligned faces `(batch_size, 112, 96, 3)` (or 112x112), RGB, `[0, 255]`.

    Returns:
        float32 array or tensor of the same shape.
    """
    return scale_pixels(x)


@keras.saving.register_keras_serializable(package="keras_sphereface")
class FrozenBiasConv2D(keras.layers.Conv2D):
    """A `Conv2D` whose bias exists (so Caffe weights load and parameter counts match) but is not trained.

    This is Caffe's `param { lr_mult: 0 }` on the bias of SphereFace's residual-unit convolutions:
    the bias stays at its loaded or initial value (zero) during training.
    """

    def build(self, input_shape: tuple) -> None:
        """Creates kernel and bias as `Conv2D` does, then freezes the bias."""
        super().build(input_shape)
        if self.use_bias:
            self.bias.trainable = False


def _caffe_xavier(seed=None):
    # Caffe's XavierFiller with the default variance_norm FAN_IN: U(-sqrt(3/fan_in), +sqrt(3/fan_in)).
    return keras.initializers.VarianceScaling(1.0, mode="fan_in", distribution="uniform", seed=seed)


def _downsample(x, filters: int, stage: int):
    name = f"conv{stage}_1"
    x, padding = _common.pad_like_caffe(x, kernel_size=3, strides=2, name=name)
    x = keras.layers.Conv2D(
        filters, 3, strides=2, padding=padding, kernel_initializer=_caffe_xavier(),
        bias_initializer="zeros", name=name,
    )(x)
    return _common.prelu(f"relu{stage}_1")(x)


def _residual_unit(x, filters: int, stage: int, unit: int):
    shortcut = x
    for offset in (2, 3):
        index = 2 * unit + offset
        x = FrozenBiasConv2D(
            filters, 3, padding="same", kernel_initializer=keras.initializers.RandomNormal(stddev=0.01),
            bias_initializer="zeros", name=f"conv{stage}_{index}",
        )(x)
        x = _common.prelu(f"relu{stage}_{index}")(x)
    return keras.layers.Add(name=f"res{stage}_{2 * unit + 3}")([shortcut, x])


def SphereNet(
    units_per_stage: Sequence[int],
    weights: str | os.PathLike | None = None,
    input_shape: Sequence[int] = (112, 96, 3),
    embedding_dim: int = 512,
    name: str = "spherenet",
    *,
    registry_model: str | None = None,
) -> keras.Model:
    """Builds a SphereNet embedding model with any number of residual units per stage.

    Args:
        units_per_stage: sequence of 4 non-negative ints. Residual units after each stage's stride-2
            convolution, e.g. `(1, 2, 4, 1)` for Sphere-20.
        weights: None, str or path-like. None (random Caffe-style initialization), a registry tag
            (only with `registry_model`, e.g. `"casia"`), or the path of a `.weights.h5` file.
        input_shape: tuple of int. `(height, width, 3)`, height and width multiples of 16 (the model
            strides by 2 four times); `(112, 96, 3)` for SphereFace alignment, `(112, 112, 3)` works too.
        embedding_dim: int. Output size of fc5.
        name: str. Model name.
        registry_model: str or None. Model name under which `weights` tags are looked up.

    Returns:
        A `keras.Model` mapping preprocessed RGB faces `(batch_size, height, width, 3)` (see
        `preprocess_input`) to embeddings `(batch_size, embedding_dim)`, float32.
    """
    units = tuple(units_per_stage)
    if len(units) != 4 or any(not isinstance(u, int) or u < 0 for u in units):
        raise ValueError(
            f"units_per_stage must be 4 non-negative ints. Received: units_per_stage={units_per_stage!r}"
        )
    shape = _common.check_input_shape(input_shape, minimum=16, divisor=16, name=name)
    entry = check_weights_argument(weights, registry_model, shape)
    _common.check_embedding_dim(embedding_dim)

    inputs = keras.Input(shape=shape, name="image")
    x = inputs
    for stage, (filters, count) in enumerate(zip(STAGE_FILTERS, units, strict=True), start=1):
        x = _downsample(x, filters, stage)
        for unit in range(count):
            x = _residual_unit(x, filters, stage, unit)
    x = keras.layers.Flatten(name="flatten")(x)
    x = keras.layers.Dense(embedding_dim, kernel_initializer=_caffe_xavier(), name="fc5")(x)
    outputs = _common.float32_embedding(x)
    model = keras.Model(inputs, outputs, name=name)
    if weights is not None:
        load_model_weights(model, weights, entry)
    return model


def _named_sphere(builder_name: str, weights, input_shape, embedding_dim, name) -> keras.Model:
    return SphereNet(
        SPHERE_UNITS[builder_name.lower()], weights=weights, input_shape=input_shape,
        embedding_dim=embedding_dim, name=name, registry_model=builder_name,
    )


def Sphere4(weights: str | os.PathLike | None = None, input_shape: Sequence[int] = (112, 96, 3),
            embedding_dim: int = 512, name: str = "sphere4") -> keras.Model:
    """Sphere-4: no residual units (units per stage `(0, 0, 0, 0)`). Arguments as `SphereNet`."""
    return _named_sphere("Sphere4", weights, input_shape, embedding_dim, name)


def Sphere10(weights: str | os.PathLike | None = None, input_shape: Sequence[int] = (112, 96, 3),
             embedding_dim: int = 512, name: str = "sphere10") -> keras.Model:
    """Sphere-10: units per stage `(0, 1, 2, 0)`. Arguments as `SphereNet`."""
    return _named_sphere("Sphere10", weights, input_shape, embedding_dim, name)


def Sphere20(weights: str | os.PathLike | None = None, input_shape: Sequence[int] = (112, 96, 3),
             embedding_dim: int = 512, name: str = "sphere20") -> keras.Model:
    """Sphere-20, the network of the SphereFace release: units per stage `(1, 2, 4, 1)`.

    `weights="casia"` is the original Caffe model (CASIA-WebFace), converted by `ksf convert caffe`
    (see `docs/models.md`). Other arguments as `SphereNet`.
    """
    return _named_sphere("Sphere20", weights, input_shape, embedding_dim, name)


def Sphere36(weights: str | os.PathLike | None = None, input_shape: Sequence[int] = (112, 96, 3),
             embedding_dim: int = 512, name: str = "sphere36") -> keras.Model:
    """Sphere-36: units per stage `(2, 4, 8, 2)`. Arguments as `SphereNet`."""
    return _named_sphere("Sphere36", weights, input_shape, embedding_dim, name)


def Sphere64(weights: str | os.PathLike | None = None, input_shape: Sequence[int] = (112, 96, 3),
             embedding_dim: int = 512, name: str = "sphere64") -> keras.Model:
    """Sphere-64: units per stage `(3, 8, 16, 3)`. Arguments as `SphereNet`."""
    return _named_sphere("Sphere64", weights, input_shape, embedding_dim, name)
