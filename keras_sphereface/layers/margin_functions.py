"""Margin functions on cosines, written with `keras.ops` so every backend can run them.

The layers in this package own the class weights; the functions here only map the cosine
between an embedding and its target class to the target logit's angular part. They are
kept separate so they can be tested against closed forms and reused by other heads.

All functions take and return float tensors of any shape; angles are in radians.
"""

from __future__ import annotations

import math

import numpy as np
from keras import ops

from keras_sphereface.utils.types import Tensor

# Cosines are clamped to +-(1 - COSINE_EPSILON) before any margin function sees them, so
# that sqrt(1 - cos^2), arccos and their gradients stay finite.
COSINE_EPSILON = 1e-6


def clamp_cosine(cos_theta: Tensor, epsilon: float = COSINE_EPSILON) -> Tensor:
    """Clamps cosines to `[-1 + epsilon, 1 - epsilon]`; same shape and dtype as `cos_theta`."""
    return ops.clip(cos_theta, -1.0 + epsilon, 1.0 - epsilon)


def _sign(x):
    # Caffe's caffe_cpu_sign: (0 < x) - (x < 0), so sign(0) == 0.
    return ops.sign(x)


def chebyshev_psi(cos_theta: Tensor, m: int) -> Tensor:
    """SphereFace's psi(theta) computed from cos(theta) as the Caffe layer does, without arccos.

    psi(theta) = (-1)^k cos(m theta) - 2k for theta in [k pi / m, (k + 1) pi / m], which is
    monotonically decreasing on [0, pi]. cos(m theta) is the Chebyshev polynomial T_m of
    cos(theta); the sign terms select k:

    - m = 1: psi = c
    - m = 2: psi = 2 sign(c) c^2 - 1
    - m = 3: psi = s1 (4 c^3 - 3 c) + s2, s1 = sign(|c| - 1/2), s2 = sign(c) (1 + s1) - 2
    - m = 4: psi = s3 (8 c^4 - 8 c^2 + 1) + s4, s3 = sign(c) sign(2 c^2 - 1), s4 = 2 sign(c) + s3 - 3

    Args:
        cos_theta: float tensor of any shape, values in [-1, 1].
        m: int in 1..4. The angular margin.

    Returns:
        psi(theta), same shape and dtype as `cos_theta`, in [-2m + 1, 1].
    """
    c = ops.convert_to_tensor(cos_theta)
    if m == 1:
        return c
    c2 = c * c
    sign_0 = _sign(c)
    if m == 2:
        return 2.0 * sign_0 * c2 - 1.0
    if m == 3:
        sign_1 = _sign(ops.abs(c) - 0.5)
        sign_2 = sign_0 * (1.0 + sign_1) - 2.0
        return sign_1 * (4.0 * c2 * c - 3.0 * c) + sign_2
    if m == 4:
        sign_3 = sign_0 * _sign(2.0 * c2 - 1.0)
        sign_4 = 2.0 * sign_0 + sign_3 - 3.0
        return sign_3 * (8.0 * c2 * c2 - 8.0 * c2 + 1.0) + sign_4
    raise ValueError(f"`m` must be an integer in 1..4. Received: m={m!r}")


def chebyshev_psi_derivative(cos_theta: Tensor, m: int) -> Tensor:
    """d psi / d cos(theta) for the polynomial form of `chebyshev_psi` (the sign terms are
    piecewise constant). Used by the Caffe-style backward pass."""
    c = ops.convert_to_tensor(cos_theta)
    if m == 1:
        return ops.ones_like(c)
    c2 = c * c
    sign_0 = _sign(c)
    if m == 2:
        return 4.0 * sign_0 * c
    if m == 3:
        return _sign(ops.abs(c) - 0.5) * (12.0 * c2 - 3.0)
    if m == 4:
        return sign_0 * _sign(2.0 * c2 - 1.0) * (32.0 * c2 * c - 16.0 * c)
    raise ValueError(f"`m` must be an integer in 1..4. Received: m={m!r}")


def general_psi(theta: Tensor, m: float) -> Tensor:
    """(-1)^k cos(m theta) - 2k with k = floor(m theta / pi), for any real m >= 1.

    The monotonic extension of cos(m theta) used by SphereFace-R; for integer m it equals
    `chebyshev_psi(cos(theta), m)`.

    Args:
        theta: float tensor of angles in [0, pi] (radians).
        m: float >= 1. The multiplicative angular margin.
    """
    m_theta = m * ops.convert_to_tensor(theta)
    k = ops.floor(m_theta / math.pi)
    parity = 1.0 - 2.0 * (k - 2.0 * ops.floor(k / 2.0))  # (-1)^k
    return parity * ops.cos(m_theta) - 2.0 * k


def arcface_target(cos_theta: Tensor, m: float, easy_margin: bool = False) -> Tensor:
    """cos(theta + m) where theta + m < pi, else cos(theta) - m sin(m) (the insightface form).

    With `easy_margin`, cos(theta + m) where cos(theta) > 0, else cos(theta).

    Args:
        cos_theta: float tensor, already clamped to the open interval (-1, 1).
        m: float or float32 scalar tensor. Additive angular margin (radians).
        easy_margin: bool. Keep cos(theta) for theta >= pi / 2.
    """
    cos_theta = ops.convert_to_tensor(cos_theta)
    sin_theta = ops.sqrt(ops.maximum(1.0 - cos_theta * cos_theta, 0.0))
    trig = math if isinstance(m, (int, float)) else ops  # a tensor m: a margin warming up
    cos_m, sin_m = trig.cos(m), trig.sin(m)
    with_margin = cos_theta * cos_m - sin_theta * sin_m
    if easy_margin:
        return ops.where(cos_theta > 0.0, with_margin, cos_theta)
    # theta + m < pi  <=>  cos(theta) > cos(pi - m)
    return ops.where(cos_theta > trig.cos(math.pi - m), with_margin, cos_theta - m * sin_m)


def combined_margin_target(cos_theta: Tensor, m1: float, m2: float, m3: float) -> Tensor:
    """cos(m1 theta + m2) - m3, the combined margin of insightface.

    (1, 0, 0) is plain softmax on cosines, (1, m, 0) ArcFace, (1, 0, m) CosFace, (m, 0, 0)
    the SphereFace form without its monotonic extension.

    Args:
        cos_theta: float tensor, already clamped to the open interval (-1, 1).
        m1: float > 0. Multiplicative angular margin.
        m2: float. Additive angular margin (radians).
        m3: float. Additive cosine margin.
    """
    theta = ops.arccos(ops.convert_to_tensor(cos_theta))
    return ops.cos(m1 * theta + m2) - m3


def caffe_lambda(
    iteration: int | np.ndarray | Tensor,
    base: float = 1000.0,
    gamma: float = 0.12,
    power: float = 1.0,
    lambda_min: float = 5.0,
) -> np.float32 | np.ndarray | Tensor:
    """The A-Softmax annealing weight of the Caffe layer: max(lambda_min, base (1 + gamma i)^-power).

    Works on Python numbers, NumPy arrays and tensors (computed in float32 like Caffe's
    `Dtype`). With the defaults, lambda is 892.857... at iteration 1, 8.264... at 1000 and
    exactly 5 from iteration 1659 on.

    Args:
        iteration: int, array or tensor. The training iteration (1 for the first step).
        base: float. Caffe `base`.
        gamma: float. Caffe `gamma`.
        power: float. Caffe `power`.
        lambda_min: float. Caffe `lambda_min`, the floor of lambda.

    Returns:
        `np.float32` (array) for Python or NumPy input, else a float32 tensor; same shape as
        `iteration`.
    """
    if isinstance(iteration, (int, float, np.ndarray, np.generic)):
        i = np.asarray(iteration, dtype=np.float32)
        value = np.float32(base) * np.power(np.float32(1.0) + np.float32(gamma) * i, np.float32(-power))
        return np.maximum(value, np.float32(lambda_min))
    i = ops.cast(iteration, "float32")
    return ops.maximum(base * ops.power(1.0 + gamma * i, -power), lambda_min)
