"""Heads on the hypersphere: ArcFace, CosFace, the combined margin, normalized softmax, SphereFace-R.

Each normalizes embeddings and class weights, computes clamped cosines in float32, puts
its margin on the target column and scales every logit by `s`.
"""

from __future__ import annotations

import math
from typing import Any

import keras
from keras import ops

from keras_sphereface.layers.base import NormalizedHead, check_non_negative, check_positive
from keras_sphereface.layers.margin_functions import (
    Tensor,
    arcface_target,
    combined_margin_target,
    general_psi,
)

# Shared by every head below; `_with_shapes_doc` appends it to the class docstring.
_SHAPES_DOC = """
    Input shape:
        `[embeddings, labels]`: `(batch_size, embedding_dim)` floats and `(batch_size,)` or
        `(batch_size, 1)` integer class ids in `[0, units)`. Labels are optional at inference.

    Output shape:
        `(batch_size, units)` float32 logits; margin-free (`s * cos(theta_j)`) unless
        `training=True` and labels are given.
"""


def _with_shapes_doc(cls):
    """Class decorator: appends `_SHAPES_DOC` to the class's own docstring.

    A class body that opens with a string literal plus `_SHAPES_DOC` holds an expression, not a
    docstring, and leaves `__doc__` None; with the decorator the body keeps a real docstring.
    """
    if cls.__doc__:  # None under `python -OO`
        cls.__doc__ = cls.__doc__.rstrip() + "\n" + _SHAPES_DOC
    return cls


@keras.saving.register_keras_serializable(package="keras_sphereface")
@_with_shapes_doc
class ArcFace(NormalizedHead):
    """Additive angular margin (Deng et al., 2019): target `s * cos(theta + m)`.

    Where `theta + m >= pi` the target is `s * (cos(theta) - m * sin(m))`, which keeps it
    monotonic in theta (the insightface form). With `easy_margin=True` the margin is only
    applied where `cos(theta) > 0`.

    Args:
        units: int. Number of classes.
        s: float > 0. Scale; default 64 (ArcFace paper).
        m: float >= 0. Additive angular margin in radians; default 0.5 (ArcFace paper).
        easy_margin: bool. See above.
        **kwargs: see `NormalizedHead` and `MarginHead` (`kernel_initializer`, `kernel_regularizer`,
            base layer arguments).
    """

    def __init__(self, units: int, s: float = 64.0, m: float = 0.5, easy_margin: bool = False, **kwargs: Any):
        super().__init__(units, s=s, **kwargs)
        self.m = check_non_negative("m", m)
        if self.m >= math.pi:
            raise ValueError(f"`m` must be smaller than pi radians. Received: m={m!r}")
        self.easy_margin = bool(easy_margin)

    def target_logit(self, cos_theta: Tensor, ramp: float | Tensor = 1.0) -> Tensor:
        return arcface_target(cos_theta, self.m * ramp, self.easy_margin)

    def get_config(self) -> dict:
        return {**super().get_config(), "m": self.m, "easy_margin": self.easy_margin}


@keras.saving.register_keras_serializable(package="keras_sphereface")
@_with_shapes_doc
class CosFace(NormalizedHead):
    """Large margin cosine loss (Wang et al., 2018): target `s * (cos(theta) - m)`.

    Args:
        units: int. Number of classes.
        s: float > 0. Scale; default 64 (CosFace paper).
        m: float >= 0. Additive cosine margin; default 0.35 (CosFace paper).
        **kwargs: see `NormalizedHead` and `MarginHead` (`kernel_initializer`, `kernel_regularizer`,
            base layer arguments).
    """

    def __init__(self, units: int, s: float = 64.0, m: float = 0.35, **kwargs: Any):
        super().__init__(units, s=s, **kwargs)
        self.m = check_non_negative("m", m)

    def target_logit(self, cos_theta: Tensor, ramp: float | Tensor = 1.0) -> Tensor:
        return cos_theta - self.m * ramp

    def get_config(self) -> dict:
        return {**super().get_config(), "m": self.m}


@keras.saving.register_keras_serializable(package="keras_sphereface")
@_with_shapes_doc
class CombinedMargin(NormalizedHead):
    """The combined margin of insightface: target `s * (cos(m1 * theta + m2) - m3)`.

    `(m1, m2, m3) = (1, 0.5, 0)` is ArcFace without its fallback, `(1, 0, 0.35)` CosFace;
    insightface trains with `(1, 0.3, 0.2)`. The formula is used as written, so for large
    margins the target is not monotonic in theta near pi.

    Args:
        units: int. Number of classes.
        s: float > 0. Scale; default 64.
        m1: float > 0. Multiplicative angular margin; default 1.
        m2: float >= 0. Additive angular margin (radians); default 0.3.
        m3: float >= 0. Additive cosine margin; default 0.2.
        **kwargs: see `NormalizedHead` and `MarginHead` (`kernel_initializer`, `kernel_regularizer`,
            base layer arguments).
    """

    def __init__(
        self, units: int, s: float = 64.0, m1: float = 1.0, m2: float = 0.3, m3: float = 0.2,
        **kwargs: Any,
    ):
        super().__init__(units, s=s, **kwargs)
        self.m1 = check_positive("m1", m1)
        self.m2 = check_non_negative("m2", m2)
        self.m3 = check_non_negative("m3", m3)

    def target_logit(self, cos_theta: Tensor, ramp: float | Tensor = 1.0) -> Tensor:
        m1 = 1.0 + (self.m1 - 1.0) * ramp
        return combined_margin_target(cos_theta, m1, self.m2 * ramp, self.m3 * ramp)

    def get_config(self) -> dict:
        return {**super().get_config(), "m1": self.m1, "m2": self.m2, "m3": self.m3}


@keras.saving.register_keras_serializable(package="keras_sphereface")
@_with_shapes_doc
class NormSoftmax(NormalizedHead):
    """Normalized softmax (NormFace, Wang et al., 2017): every logit is `s * cos(theta_j)`, no margin.

    Args:
        units: int. Number of classes.
        s: float > 0. Scale; default 30.
        **kwargs: see `NormalizedHead` and `MarginHead` (`kernel_initializer`, `kernel_regularizer`,
            base layer arguments).
    """

    def __init__(self, units: int, s: float = 30.0, **kwargs: Any):
        super().__init__(units, s=s, **kwargs)

    def target_logit(self, cos_theta: Tensor, ramp: float | Tensor = 1.0) -> Tensor:
        return cos_theta


@keras.saving.register_keras_serializable(package="keras_sphereface")
@_with_shapes_doc
class SphereFaceR(NormalizedHead):
    """SphereFace-R style head (Liu et al., 2022): normalized features and weights, scale s, and the
    multiplicative margin `psi(theta) = (-1)^k cos(m theta) - 2k`, `k = floor(m theta / pi)`.

    As in SphereFace-R's gradient-detached form, the forward value of the target is
    `s * psi(theta)` while its gradient is that of `s * cos(theta)`: the margin changes
    what is optimized, not the conditioning of the gradient. Any real `m >= 1` works.

    Args:
        units: int. Number of classes.
        s: float > 0. Scale; default 30 (SphereFace-R).
        m: float >= 1. Multiplicative angular margin; default 1.5 (SphereFace-R).
        **kwargs: see `NormalizedHead` and `MarginHead` (`kernel_initializer`, `kernel_regularizer`,
            base layer arguments).
    """

    def __init__(self, units: int, s: float = 30.0, m: float = 1.5, **kwargs: Any):
        super().__init__(units, s=s, **kwargs)
        self.m = check_positive("m", m)
        if self.m < 1:
            raise ValueError(f"`m` must be >= 1. Received: m={m!r}")

    def target_logit(self, cos_theta: Tensor, ramp: float | Tensor = 1.0) -> Tensor:
        theta = ops.arccos(cos_theta)
        m = 1.0 + (self.m - 1.0) * ramp
        return cos_theta + ops.stop_gradient(general_psi(theta, m) - cos_theta)

    def get_config(self) -> dict:
        return {**super().get_config(), "m": self.m}
