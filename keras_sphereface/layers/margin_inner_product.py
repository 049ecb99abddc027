"""`MarginInnerProduct`: SphereFace's A-Softmax exactly as the Caffe release computes it."""

from __future__ import annotations

import numbers
from typing import Any

import keras
import numpy as np
from keras import ops

from keras_sphereface.layers.base import MarginHead, check_non_negative, check_positive
from keras_sphereface.layers.head_ops import (
    add_to_label_columns,
    cosine_matmul,
    l2_normalize,
    one_hot_columns,
    row_norm,
)
from keras_sphereface.layers.margin_functions import (
    Tensor,
    caffe_lambda,
    chebyshev_psi,
    chebyshev_psi_derivative,
    clamp_cosine,
)


@keras.saving.register_keras_serializable(package="keras_sphereface")
class MarginInnerProduct(MarginHead):
    """A-Softmax (angular softmax) head, faithful to SphereFace's `MarginInnerProduct` Caffe layer.

    Class weights are L2-normalized per class in the forward pass (no bias); embeddings are
    not. With `c = cos(theta_j) = x . w_j / |x|`:

    - non-target logits: `x . w_j`;
    - target logit: `(lambda * x . w_y + |x| * psi(theta_y)) / (1 + lambda)`, where
      `psi(theta) = (-1)^k cos(m theta) - 2k` on `[k pi / m, (k + 1) pi / m]`, computed from
      `c` by Chebyshev polynomials and sign terms, without arccos (see
      `margin_functions.chebyshev_psi`). With `m=1` the target logit is simply `x . w_y`
      ("modified softmax") and lambda plays no part.
    - `lambda = max(lambda_min, base * (1 + gamma * iteration)^(-power))`, where the
      non-trainable variable `iteration` is incremented by one in every training call
      *before* lambda is computed, as Caffe does. It is saved with the model, so resuming
      or fine-tuning continues the annealing. Under `tf.distribute` it advances once per
      global step (only the first replica's update is kept).

    With `training=False`, or without labels, the layer returns the margin-free logits
    `x . w_j` and leaves `iteration` alone.

    Args:
        units: int. Number of classes (Caffe's `num_output`).
        m: int in 1..4. The angular margin (Caffe's SINGLE, DOUBLE, TRIPLE, QUADRUPLE).
        base: float > 0. Caffe `base`.
        gamma: float >= 0. Caffe `gamma`.
        power: float >= 0. Caffe `power`.
        lambda_min: float >= 0. Caffe `lambda_min`.
        iteration: int >= 0. The iteration count to start from (Caffe `iteration`).
        m_schedule: None or a list of `[step, m]` pairs, steps strictly increasing, the last `m`
            equal to `m`: a staged margin, e.g. `[[0, 1], [2000, 4]]` trains with m=1 (modified
            softmax) up to iteration 1999 and with m=4 from 2000 on. Each stage holds from its step;
            before the first, the first stage's m. `iteration` runs on across stages, so lambda
            continues its annealing rather than restarting at `base`.
        caffe_backward: bool. Use the Caffe layer's own backward pass instead of the exact
            derivative: for the target column the input-gradient coefficients of `w_y` and
            `x` are rescaled to unit norm, and the class-weight gradient is `x^T g` as for a
            plain inner product (Caffe ignores the margin and the normalization there).
            Default False (exact gradients by autodiff).
        kernel_initializer, kernel_regularizer, **kwargs: see `MarginHead`.

    Input shape:
        `[embeddings, labels]`: `(batch_size, embedding_dim)` floats and `(batch_size,)` or
        `(batch_size, 1)` integer class ids in `[0, units)`.

    Output shape:
        `(batch_size, units)` float32 logits.

    Example:
    >>> head = MarginInnerProduct(10, m=4)
    >>> logits = head([np.ones((2, 8), "float32"), np.array([1, 3])], training=True)
    >>> tuple(logits.shape), float(head.current_lambda)
    ((2, 10), 892.857...)
    """

    def __init__(
        self,
        units: int,
        m: int = 4,
        base: float = 1000.0,
        gamma: float = 0.12,
        power: float = 1.0,
        lambda_min: float = 5.0,
        iteration: int = 0,
        m_schedule: list | None = None,
        caffe_backward: bool = False,
        kernel_initializer: str | keras.initializers.Initializer = "glorot_uniform",
        kernel_regularizer: str | keras.regularizers.Regularizer | None = None,
        **kwargs: Any,
    ):
        super().__init__(
            units,
            kernel_initializer=kernel_initializer,
            kernel_regularizer=kernel_regularizer,
            **kwargs,
        )
        if not isinstance(m, numbers.Integral) or isinstance(m, bool) or not 1 <= m <= 4:
            raise ValueError(f"`m` must be an integer in 1..4. Received: m={m!r}")
        if not isinstance(iteration, numbers.Integral) or isinstance(iteration, bool) or iteration < 0:
            raise ValueError(f"`iteration` must be an integer >= 0. Received: iteration={iteration!r}")
        self.m = int(m)
        self.base = check_positive("base", base)
        self.gamma = check_non_negative("gamma", gamma)
        self.power = check_non_negative("power", power)
        self.lambda_min = check_non_negative("lambda_min", lambda_min)
        self.initial_iteration = int(iteration)
        self.m_schedule = _check_m_schedule(m_schedule, self.m)
        self.caffe_backward = bool(caffe_backward)

    def build(self, input_shape: tuple | list[tuple]) -> None:
        """Creates `kernel` (see `MarginHead.build`) and the int32 `iteration` counter."""
        super().build(input_shape)
        self.iteration = self.add_weight(
            name="iteration",
            shape=(),
            dtype="int32",
            initializer=keras.initializers.Constant(self.initial_iteration),
            trainable=False,
            aggregation="only_first_replica",
        )

    @property
    def current_lambda(self) -> np.float32:
        """The lambda of the latest training step (from the `iteration` variable), as a float32."""
        iteration = int(ops.convert_to_numpy(self.iteration)) if self.built else self.initial_iteration
        return self.lambda_at(iteration)

    @property
    def annealed_iteration(self) -> int:
        """The first iteration whose lambda is `lambda_min` (1659 with the Caffe defaults); 0 if it never falls."""
        if self.gamma == 0 or self.power == 0 or self.lambda_min == 0:
            return 0
        guess = int(((self.base / self.lambda_min) ** (1.0 / self.power) - 1.0) / self.gamma)
        iteration = max(guess - 2, 0)
        while self.lambda_at(iteration) > self.lambda_min:  # float32 rounding decides the last step or two
            iteration += 1
        return iteration

    def lambda_at(self, iteration: int) -> np.float32:
        """The lambda this layer uses at a given iteration (1 for the first training step)."""
        return caffe_lambda(iteration, self.base, self.gamma, self.power, self.lambda_min)

    def plain_logits(self, embeddings: Tensor, kernel: Tensor) -> Tensor:
        return cosine_matmul(embeddings, kernel)

    def margin_at(self, iteration: int) -> int:
        """The margin m of a given iteration (1 for the first training step): `m`, or its `m_schedule` stage."""
        if not self.m_schedule:
            return self.m
        stages = [m for step, m in self.m_schedule if step <= iteration]
        return stages[-1] if stages else self.m_schedule[0][1]

    def margin_logits(self, embeddings: Tensor, kernel: Tensor, labels: Tensor) -> Tensor:
        new_iteration = self.iteration + 1
        self.iteration.assign(new_iteration)
        lam = ops.cast(
            caffe_lambda(new_iteration, self.base, self.gamma, self.power, self.lambda_min),
            self.compute_dtype,
        )
        if not self.m_schedule:
            return self._logits_with_margin(embeddings, kernel, labels, lam, self.m)
        if self.caffe_backward:  # each stage's own backward pass; the stage of this iteration is kept
            logits = None
            for step, m in self.m_schedule:
                stage = self._logits_with_margin(embeddings, kernel, labels, lam, m)
                logits = stage if logits is None else ops.where(new_iteration >= step, stage, logits)
            return logits
        return staged_a_softmax_logits(embeddings, kernel, labels, lam, self.m_schedule, new_iteration)

    def _logits_with_margin(self, embeddings: Tensor, kernel: Tensor, labels: Tensor, lam: Tensor,
                            m: int) -> Tensor:
        if m == 1:
            return self.plain_logits(embeddings, kernel)
        if self.caffe_backward:
            return caffe_backward_logits(embeddings, kernel, labels, lam, m)
        return a_softmax_logits(embeddings, kernel, labels, lam, m)

    def get_config(self) -> dict:
        config = super().get_config()
        iteration = self.initial_iteration
        if self.built:
            # The current count, so a layer rebuilt from its config continues the annealing.
            iteration = int(ops.convert_to_numpy(self.iteration))
        config.update(
            {
                "m": self.m,
                "base": self.base,
                "gamma": self.gamma,
                "power": self.power,
                "lambda_min": self.lambda_min,
                "iteration": iteration,
                "m_schedule": [list(stage) for stage in self.m_schedule] if self.m_schedule else None,
                "caffe_backward": self.caffe_backward,
            }
        )
        return config


def _check_m_schedule(schedule: list | None, m: int) -> list[tuple[int, int]] | None:
    """`m_schedule` as `(step, m)` tuples, or a `ValueError` naming what is wrong."""
    if schedule is None or len(schedule) == 0:
        return None
    stages = []
    for entry in schedule:
        if (not isinstance(entry, (list, tuple)) or len(entry) != 2
                or not all(isinstance(v, numbers.Integral) and not isinstance(v, bool) for v in entry)):
            raise ValueError(f"`m_schedule` must be a list of [step, m] integer pairs. "
                             f"Received: m_schedule={schedule!r}")
        step, stage_m = int(entry[0]), int(entry[1])
        if step < 0 or not 1 <= stage_m <= 4:
            raise ValueError(f"`m_schedule` steps must be >= 0 and margins in 1..4. Received: m_schedule={schedule!r}")
        if stages and step <= stages[-1][0]:
            raise ValueError(f"`m_schedule` steps must be strictly increasing. Received: m_schedule={schedule!r}")
        stages.append((step, stage_m))
    if stages[-1][1] != m:
        raise ValueError(f"The last stage of `m_schedule` must be the head's m={m}. Received: m_schedule={schedule!r}")
    return stages


def a_softmax_logits(embeddings: Tensor, kernel: Tensor, labels: Tensor, lam: float | Tensor, m: int) -> Tensor:
    """A-Softmax logits `(batch_size, units)`, gradients by autodiff (the exact derivative).

    Args:
        embeddings: `(batch_size, dim)` features (not normalized).
        kernel: `(dim, units)` class weights (normalized per column here).
        labels: int32 `(batch_size, 1)`; psi is evaluated on the target column only.
        lam: float. The annealing lambda (`MarginInnerProduct.lambda_at`).
        m: int. The angular margin, 1 to 4.
    """
    return staged_a_softmax_logits(embeddings, kernel, labels, lam, [(0, m)], 1)


def staged_a_softmax_logits(embeddings: Tensor, kernel: Tensor, labels: Tensor, lam: float | Tensor,
                            stages: list[tuple[int, int]], iteration: int | Tensor) -> Tensor:
    """`a_softmax_logits` with the margin of the `(step, m)` stage `iteration` is in (`m_schedule`).

    The `(batch_size, units)` product and the norms are computed once; only the `(batch_size, 1)`
    target column is computed per stage, and the stage of `iteration` selected.
    """
    embeddings, labels = ops.convert_to_tensor(embeddings), ops.convert_to_tensor(labels)
    inner = cosine_matmul(embeddings, kernel)  # x . w_j / |w_j|, (batch, units)
    norm = row_norm(embeddings)  # |x|, (batch, 1)
    target_inner = ops.take_along_axis(inner, labels, axis=1)  # x . w_y, (batch, 1)
    cos_theta = clamp_cosine(target_inner / norm)
    target = None
    for step, m in stages:
        stage = target_inner if m == 1 else (lam * target_inner + norm * chebyshev_psi(cos_theta, m)) / (1.0 + lam)
        target = stage if target is None else ops.where(iteration >= step, stage, target)
    return add_to_label_columns(inner, labels, target - target_inner)


def caffe_backward_logits(
    embeddings: Tensor, kernel: Tensor, labels: Tensor, lam: float | Tensor, m: int
) -> Tensor:
    """The same forward values as `a_softmax_logits`, with the Caffe layer's backward pass (`caffe_backward=True`)."""
    embeddings, kernel = ops.convert_to_tensor(embeddings), ops.convert_to_tensor(kernel)
    one_hot = one_hot_columns(labels, kernel.shape[-1], embeddings.dtype)

    @ops.custom_gradient
    def forward(x, w):
        w_unit = l2_normalize(w, 0)
        inner = ops.matmul(x, w_unit)
        norm = row_norm(x)
        cos_theta = clamp_cosine(inner / norm)
        psi = chebyshev_psi(cos_theta, m)
        target = (lam * inner + norm * psi) / (1.0 + lam)
        logits = one_hot * target + (1.0 - one_hot) * inner

        def grad(*args, upstream=None):
            if upstream is None:
                (upstream,) = args
            # Target column: coefficients of w_y and x of the exact derivative of |x| psi,
            #   d(|x| psi)/dx = psi'(c) w_y + (psi(c) - c psi'(c)) / |x| * x,
            # rescaled to unit norm as Caffe does.
            derivative = chebyshev_psi_derivative(cos_theta, m)
            coeff_w = derivative
            coeff_x = (psi - cos_theta * derivative) / norm
            coeff_norm = ops.sqrt(ops.maximum(coeff_w * coeff_w + coeff_x * coeff_x, 1e-24))
            coeff_w = coeff_w / coeff_norm
            coeff_x = coeff_x / coeff_norm
            g_target = ops.sum(upstream * one_hot, axis=-1, keepdims=True)  # (batch, 1)
            c_w = ops.sum(coeff_w * one_hot, axis=-1, keepdims=True)
            c_x = ops.sum(coeff_x * one_hot, axis=-1, keepdims=True)
            # Non-target columns: g_j w_j. Target: g_y (lambda w_y + c_w w_y + c_x x) / (1 + lambda).
            column_weights = upstream * (1.0 - one_hot) + one_hot * g_target * (lam + c_w) / (1.0 + lam)
            dx = ops.matmul(column_weights, ops.transpose(w_unit)) + g_target * c_x / (1.0 + lam) * x
            # Weights: Caffe's plain inner-product gradient, x^T g.
            dw = ops.matmul(ops.transpose(x), upstream)
            return dx, dw

        return logits, grad

    return forward(embeddings, kernel)
