"""The numeric building blocks of the margin heads: safe L2 normalization, cosine products, target scatters.

Each works on `keras.ops` tensors of any backend and stays finite at zero vectors (norms are
clamped to `NORM_EPSILON` before a square root or a division).
"""

from __future__ import annotations

from keras import ops

from keras_sphereface.utils.types import Tensor

# The squared norm of an all-zero embedding row is clamped to this before sqrt/division.
NORM_EPSILON = 1e-12


def l2_normalize(x: Tensor, axis: int) -> Tensor:
    """`x / max(|x|, 1e-6)` along `axis`: finite (zero) for all-zero vectors, gradients too."""
    x = ops.convert_to_tensor(x)
    squared = ops.sum(ops.square(x), axis=axis, keepdims=True)
    return x * ops.rsqrt(ops.maximum(squared, NORM_EPSILON))


def inverse_column_norms(kernel: Tensor, scale: float = 1.0) -> Tensor:
    """`scale / |w_j|` for every column of `kernel`, shape `(1, units)`; safe at zero.

    The gradient is written out: `d(scale / |w_j|) / dw_j = -(scale / |w_j|^3) w_j`, one
    element-wise multiply over the kernel, where autodiff of `rsqrt(sum(square(w)))` without
    XLA takes three passes over a `(dim, units)` tensor (broadcast, `2 w`, product). Where the
    squared norm is clamped to `NORM_EPSILON` the derivative is 0, as for `maximum`.

    Args:
        kernel: tensor `(dim, units)`.
        scale: float. Multiplies the result (a head's `s` is folded in here, on `units` values
            instead of the `(batch_size, units)` logits).

    Returns:
        Tensor `(1, units)`.
    """

    @ops.custom_gradient
    def forward(w):
        squared = ops.sum(ops.square(w), axis=0, keepdims=True)
        clamped = ops.maximum(squared, NORM_EPSILON)
        inverse = scale * ops.rsqrt(clamped)

        def grad(*args, upstream=None):
            if upstream is None:
                (upstream,) = args
            coefficient = ops.where(squared >= NORM_EPSILON, -upstream * inverse / clamped, 0.0)
            return w * ops.cast(coefficient, w.dtype)

        return inverse, grad

    return forward(ops.convert_to_tensor(kernel))


def cosine_matmul(x: Tensor, kernel: Tensor, scale: float = 1.0) -> Tensor:
    """`scale * x @ (kernel / |kernel|_columns)`, without materializing the normalized kernel.

    The column norms scale the `(batch_size, units)` product instead of the `(dim, units)` kernel:
    the same values, one pass over the kernel fewer forward and backward (about 10% of a head's
    training step at 10,575 classes; `docs/performance.md`). `scale` is folded into the
    `(1, units)` inverse norms (`inverse_column_norms`), so it costs no pass over the product.

    Args:
        x: tensor `(batch_size, dim)`.
        kernel: tensor `(dim, units)`.
        scale: float. Multiplies every output.

    Returns:
        Tensor `(batch_size, units)`: `scale * x . w_j / |w_j|`.
    """
    return ops.matmul(x, kernel) * inverse_column_norms(kernel, scale)


def row_norm(x: Tensor) -> Tensor:
    """`|x|` per row of a `(batch_size, dim)` tensor, shape `(batch_size, 1)`; safe at zero."""
    return ops.sqrt(ops.maximum(ops.sum(ops.square(x), axis=-1, keepdims=True), NORM_EPSILON))


def one_hot_columns(labels: Tensor, units: int, dtype: str) -> Tensor:
    """`(batch_size, units)` one-hot rows from `(batch_size, 1)` integer labels."""
    return ops.one_hot(ops.reshape(labels, (-1,)), units, dtype=dtype)


def add_to_label_columns(logits: Tensor, labels: Tensor, values: Tensor) -> Tensor:
    """`logits` with `values[i]` added to `logits[i, labels[i]]`, by a scatter.

    Only the label column of each row changes. A one-hot `(batch_size, units)` mask multiplied by
    `values` and added takes three full passes over the logits forward and two backward without
    XLA; the scatter copies the logits once forward, and its gradient passes through unchanged
    (`docs/performance.md`).

    Args:
        logits: tensor `(batch_size, units)`.
        labels: int32 tensor `(batch_size, 1)` (or `(batch_size,)`), values in `[0, units)`.
        values: tensor `(batch_size, 1)` (or `(batch_size,)`) in the dtype of `logits`.

    Returns:
        Tensor `(batch_size, units)`.
    """
    labels = ops.reshape(ops.cast(labels, "int32"), (-1,))
    rows = ops.cumsum(ops.ones_like(labels)) - 1  # 0..batch_size-1, also for a dynamic batch
    indices = ops.stack([rows, labels], axis=1)
    return ops.scatter_update(logits, indices, ops.reshape(values, (-1,)), reduction="add")
