"""The shared part of every margin head: class weights, input checks, float32 compute.

A head is called as `head([embeddings, labels], training=...)`. It keeps its class weights
as `kernel` of shape `(embedding_dim, units)` and returns float32 logits of shape
`(batch_size, units)`, also under mixed-precision policies. Subclasses implement
`margin_logits` (training with labels) and `plain_logits` (inference, or no labels).
"""

from __future__ import annotations

import numbers
from typing import Any

import keras
import numpy as np
from keras import ops

from keras_sphereface.layers.head_ops import add_to_label_columns, cosine_matmul, l2_normalize
from keras_sphereface.layers.margin_functions import COSINE_EPSILON, clamp_cosine
from keras_sphereface.utils.types import Tensor


def check_positive(name: str, value: float) -> float:
    """`value` as a float if it is a real number > 0 (not a bool), else a `ValueError` naming `name`."""
    if not isinstance(value, numbers.Real) or isinstance(value, bool) or not value > 0:
        raise ValueError(f"`{name}` must be a positive number. Received: {name}={value!r}")
    return float(value)


def check_non_negative(name: str, value: float) -> float:
    """`value` as a float if it is a real number >= 0 (not a bool), else a `ValueError` naming `name`."""
    if not isinstance(value, numbers.Real) or isinstance(value, bool) or value < 0:
        raise ValueError(f"`{name}` must be a number >= 0. Received: {name}={value!r}")
    return float(value)


def _concrete_values(tensor) -> np.ndarray | None:
    """The values of an eager tensor or array, or None for symbolic/traced tensors."""
    if isinstance(tensor, (np.ndarray, list, tuple, numbers.Number)):
        return np.asarray(tensor)
    if isinstance(tensor, keras.KerasTensor):
        return None
    try:
        return np.asarray(ops.convert_to_numpy(tensor))
    except Exception:  # graph tensors and JAX tracers have no values yet
        return None


class MarginHead(keras.layers.Layer):
    """Base class of the margin heads: owns `kernel` `(embedding_dim, units)` and checks inputs.

    Args:
        units: int. Number of classes.
        kernel_initializer: str or `keras.initializers.Initializer`. Initializer for the class
            weights. Caffe's SphereFace used Xavier, which is Keras' `"glorot_uniform"`.
        kernel_regularizer: str, `keras.regularizers.Regularizer` or None. Regularizer for the
            class weights.
        classes_first: bool. Keep `kernel` as `(units, embedding_dim)` rows (one class centre per
            row, insightface's layout) instead of `(embedding_dim, units)`. Partial FC trains the
            rows in place (a row gather and scatter per step); the logits are the same.
        external_centres: bool. The head creates no `kernel`: the caller keeps the class centres
            and passes them to `margin_logits` (a class-sharded head splits them across
            replicas). Calling the layer itself then raises.
        **kwargs: base `keras.layers.Layer` arguments. A mixed-precision `dtype` is
            replaced by `"float32"`: heads always compute in float32.
    """

    def __init__(
        self,
        units: int,
        kernel_initializer: str | keras.initializers.Initializer = "glorot_uniform",
        kernel_regularizer: str | keras.regularizers.Regularizer | None = None,
        classes_first: bool = False,
        external_centres: bool = False,
        **kwargs: Any,
    ):
        dtype = kwargs.pop("dtype", None)
        policy = keras.dtype_policies.get(dtype) if dtype is not None else keras.config.dtype_policy()
        if policy.compute_dtype != "float64":
            dtype = "float32"
        super().__init__(dtype=dtype, **kwargs)
        if not isinstance(units, numbers.Integral) or isinstance(units, bool) or units < 1:
            raise ValueError(f"`units` must be a positive integer. Received: units={units!r}")
        self.units = int(units)
        self.kernel_initializer = keras.initializers.get(kernel_initializer)
        self.kernel_regularizer = keras.regularizers.get(kernel_regularizer)
        self.classes_first = bool(classes_first)
        self.external_centres = bool(external_centres)
        self.supports_masking = False

    # -- building ---------------------------------------------------------------------------
    def _split_shapes(self, input_shape):
        if isinstance(input_shape, (list, tuple)) and input_shape and isinstance(
            input_shape[0], (list, tuple)
        ):
            return tuple(input_shape[0]), tuple(input_shape[1]) if len(input_shape) > 1 else None
        return tuple(input_shape), None

    def build(self, input_shape: tuple | list[tuple]) -> None:
        """Creates `kernel` `(embedding_dim, units)` (`classes_first`: `(units, embedding_dim)`) from the embeddings.

        Args:
            input_shape: tuple, or a list of the embeddings' and labels' shapes. The embeddings
                must be `(batch_size, embedding_dim)` with a known `embedding_dim`.
        """
        embedding_shape, _ = self._split_shapes(input_shape)
        if len(embedding_shape) != 2 or embedding_shape[-1] is None:
            raise ValueError(
                f"{self.__class__.__name__} expects embeddings of shape (batch_size, embedding_dim) "
                f"with a known embedding_dim. Received: embeddings shape={embedding_shape}"
            )
        self.embedding_dim = int(embedding_shape[-1])
        if self.external_centres:
            return
        self.kernel = self.add_weight(
            name="kernel",
            shape=(self.units, self.embedding_dim) if self.classes_first else (self.embedding_dim, self.units),
            initializer=self.kernel_initializer,
            regularizer=self.kernel_regularizer,
            dtype="float32" if self.compute_dtype != "float64" else "float64",
        )

    def compute_output_shape(self, input_shape: tuple | list[tuple]) -> tuple:
        """`(batch_size, units)`, from the embeddings' shape (labels do not change it)."""
        embedding_shape, _ = self._split_shapes(input_shape)
        return (embedding_shape[0], self.units)

    def compute_output_spec(self, inputs: Tensor | list, training: bool | None = None) -> keras.KerasTensor:
        """A `keras.KerasTensor` `(batch_size, units)` in the compute dtype, for symbolic calls."""
        embeddings = inputs[0] if isinstance(inputs, (list, tuple)) else inputs
        return keras.KerasTensor((embeddings.shape[0], self.units), dtype=self.compute_dtype)

    # -- calling ----------------------------------------------------------------------------
    def _unpack(self, inputs):
        if isinstance(inputs, (list, tuple)):
            if len(inputs) == 1:
                return inputs[0], None
            if len(inputs) != 2:
                raise ValueError(
                    f"{self.__class__.__name__} is called as head([embeddings, labels]). "
                    f"Received: {len(inputs)} inputs"
                )
            return inputs[0], inputs[1]
        return inputs, None

    def _check_inputs(self, embeddings, labels):
        if len(embeddings.shape) != 2:
            raise ValueError(
                "`embeddings` must have rank 2, shape (batch_size, embedding_dim). "
                f"Received: embeddings shape={tuple(embeddings.shape)}"
            )
        if self.built and embeddings.shape[-1] not in (None, self.embedding_dim):
            raise ValueError(
                f"`embeddings` must have embedding_dim={self.embedding_dim} (the head was built for it). "
                f"Received: embeddings shape={tuple(embeddings.shape)}"
            )
        if labels is None:
            return
        rank = len(labels.shape)
        if rank not in (1, 2) or (rank == 2 and labels.shape[-1] not in (None, 1)):
            raise ValueError(
                "`labels` must be integer class ids of shape (batch_size,) or (batch_size, 1). "
                f"Received: labels shape={tuple(labels.shape)}"
            )
        values = _concrete_values(labels)
        if values is None or values.size == 0:
            return
        if not np.issubdtype(values.dtype, np.integer) and not np.all(values == np.round(values)):
            raise ValueError(f"`labels` must be integers. Received: labels={values.ravel()[:8]}")
        low, high = values.min(), values.max()
        if low < 0 or high >= self.units:
            bad = low if low < 0 else high
            raise ValueError(
                f"`labels` must be in [0, {self.units - 1}] (units={self.units}). "
                f"Received: a label of {bad}"
            )

    def __call__(self, inputs, *args, **kwargs):
        embeddings, labels = self._unpack(inputs)
        if hasattr(embeddings, "shape"):
            self._check_inputs(embeddings, labels if hasattr(labels, "shape") else None)
        return super().__call__(inputs, *args, **kwargs)

    def call(self, inputs: Tensor | list, training: bool | None = None) -> Tensor:
        """Logits `(batch_size, units)`: `margin_logits` when training with labels, else `plain_logits`.

        Args:
            inputs: `[embeddings, labels]`, `[embeddings]` or `embeddings`; see the class docstring.
            training: bool or None. The margin applies only when True.
        """
        if self.external_centres:
            raise ValueError(f"Head {self.name!r} keeps no class centres (external_centres=True): call "
                             f"margin_logits(embeddings, centres, labels) with them.")
        embeddings, labels = self._unpack(inputs)
        embeddings = ops.cast(embeddings, self.compute_dtype)
        kernel = ops.cast(self.kernel, self.compute_dtype)
        if self.classes_first:
            kernel = ops.transpose(kernel)
        if not training or labels is None:
            return self.plain_logits(embeddings, kernel)
        labels = ops.reshape(ops.cast(labels, "int32"), (-1, 1))
        return self.margin_logits(embeddings, kernel, labels)

    def plain_logits(self, embeddings: Tensor, kernel: Tensor) -> Tensor:
        """Margin-free logits `(batch_size, units)` for inference and accuracy metrics."""
        raise NotImplementedError

    def margin_logits(self, embeddings: Tensor, kernel: Tensor, labels: Tensor) -> Tensor:
        """Training logits `(batch_size, units)` with the margin on the target column.

        `labels` are int32 of shape `(batch_size, 1)`.
        """
        raise NotImplementedError

    def get_config(self) -> dict:
        config = super().get_config()
        config.update(
            {
                "units": self.units,
                "kernel_initializer": keras.initializers.serialize(self.kernel_initializer),
                "kernel_regularizer": keras.regularizers.serialize(self.kernel_regularizer),
                "classes_first": self.classes_first,
                "external_centres": self.external_centres,
            }
        )
        return config


class NormalizedHead(MarginHead):
    """A head on cosines: embeddings and class weights are both L2-normalized, logits scaled by s.

    Subclasses implement `target_logit(cos_theta, ramp)`, the target column's value before scaling.

    Margin warm-up: with `margin_warmup_steps = N > 0` the margin rises linearly from none at the
    first training step to the full margin at step N (`ramp = min(1, iteration / N)`), counted by a
    non-trainable int32 `iteration` variable that is saved with the model (so resuming continues
    the ramp) and advances once per global step under `tf.distribute`.

    Args:
        units: int. Number of classes.
        s: float > 0. The scale (radius of the hypersphere).
        margin_warmup_steps: int >= 0. Steps over which the margin rises from 0; 0: full from step 1.
        **kwargs: see `MarginHead` (`kernel_initializer`, `kernel_regularizer`, base layer
            arguments).
    """

    def __init__(self, units: int, s: float = 64.0, margin_warmup_steps: int = 0, **kwargs: Any):
        super().__init__(units, **kwargs)
        self.s = check_positive("s", s)
        if not isinstance(margin_warmup_steps, numbers.Integral) or isinstance(margin_warmup_steps, bool) \
                or margin_warmup_steps < 0:
            raise ValueError(f"`margin_warmup_steps` must be an integer >= 0. "
                             f"Received: margin_warmup_steps={margin_warmup_steps!r}")
        self.margin_warmup_steps = int(margin_warmup_steps)

    def build(self, input_shape: tuple | list[tuple]) -> None:
        """Creates `kernel`, and the int32 `iteration` counter when the margin warms up."""
        super().build(input_shape)
        if self.margin_warmup_steps:
            self.iteration = self.add_weight(name="iteration", shape=(), dtype="int32", initializer="zeros",
                                             trainable=False, aggregation="only_first_replica")

    def margin_ramp(self) -> float | Tensor:
        """The fraction of the margin this training step applies: 1.0, or `min(1, iteration / N)` warming up.

        Advances `iteration` by one first (so step 1 has ramp `1 / N`).
        """
        if not self.margin_warmup_steps:
            return 1.0
        iteration = self.iteration + 1
        self.iteration.assign(iteration)
        return ops.minimum(ops.cast(iteration, "float32") / float(self.margin_warmup_steps), 1.0)

    def cosines(self, embeddings: Tensor, kernel: Tensor) -> Tensor:
        """Clamped cosines `(batch_size, units)` between embeddings and class weights."""
        return clamp_cosine(cosine_matmul(l2_normalize(embeddings, -1), kernel))

    def scaled_cosines(self, embeddings: Tensor, kernel: Tensor) -> Tensor:
        """`s` times the clamped cosines, `(batch_size, units)`: the margin-free logits.

        `s` scales the `(1, units)` inverse column norms and the clamp bounds are `s (1 - eps)`,
        so neither costs a pass over the logits of its own (equal to `s * cosines(...)` up to
        float32 rounding).
        """
        bound = self.s * (1.0 - COSINE_EPSILON)
        scaled = cosine_matmul(l2_normalize(embeddings, -1), kernel, scale=self.s)
        return ops.clip(scaled, -bound, bound)

    def plain_logits(self, embeddings: Tensor, kernel: Tensor) -> Tensor:
        return self.scaled_cosines(embeddings, kernel)

    def margin_logits(self, embeddings: Tensor, kernel: Tensor, labels: Tensor) -> Tensor:
        logits = self.scaled_cosines(embeddings, kernel)
        # The margin function runs on the (batch_size, 1) target cosines only, and the scatter
        # changes only the target column. `target / s` is the clamped cosine up to one rounding
        # step (exact for s a power of two), far from +-1 where arccos or sqrt would break.
        target = ops.take_along_axis(logits, labels, axis=1)
        delta = self.s * self.target_logit(target / self.s, self.margin_ramp()) - target
        return add_to_label_columns(logits, labels, delta)

    def target_logit(self, cos_theta: Tensor, ramp: float | Tensor = 1.0) -> Tensor:
        """The target column's value before scaling by `s`, e.g. `cos(theta + m)` for ArcFace.

        Args:
            cos_theta: float tensor `(batch_size, 1)`. Clamped cosines of the target classes.
            ramp: float or float32 scalar tensor in [0, 1]. The fraction of the margin to apply
                (`margin_ramp`): 0 is no margin, 1 the full one.

        Returns:
            A tensor of the same shape and dtype.
        """
        raise NotImplementedError

    def get_config(self) -> dict:
        config = super().get_config()
        config.update({"s": self.s, "margin_warmup_steps": self.margin_warmup_steps})
        return config
