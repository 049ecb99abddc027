"""Partial FC in TensorFlow: the per-step sample of the class centres, and the sampled rows' SGD update.

A head trained with Partial FC keeps its kernel as `(units, embedding_dim)` rows (`classes_first=True`).
`SampledCentres` works on those rows in place: a step draws its sample with `sample` (seeded by the
run's seed and the global step: a resumed run draws the same samples), gathers the rows with
`gather`, computes the head's logits over them
(`keras_sphereface.layers.partial_fc.sampled_margin_logits`) and hands the rows' gradient to
`apply_sgd`, which updates only the sampled rows and their momentum (row scatters: beyond drawing
the sample, the cost of a step does not grow with the classes).

The momentum of a row that was not sampled is left as it is until the row is sampled again: it is
neither decayed nor applied, as in insightface's first Partial FC (which kept `weight_mom` beside the
weights and updated the sampled rows only). insightface's PartialFC_V2 instead lets PyTorch's SGD
move every row by its momentum each step; that costs a pass over the whole `(units, dim)` matrix per
step, the very cost sampling removes. Weight decay applies to the sampled rows only, for the same
reason.
"""

from __future__ import annotations

import keras
import tensorflow as tf

from keras_sphereface.layers.partial_fc import sample_classes
from keras_sphereface.training.centre_momentum import CentresMomentum


class SampledCentres:
    """The rows of a `classes_first` head's kernel, sampled each step, and their SGD momentum.

    Args:
        head: MarginHead (built, `classes_first=True`). Its kernel is trained in place.
        num_sampled: int. Centres per step (`keras_sphereface.layers.partial_fc.sampled_count`).
        seed: int. The run's seed; step `i` samples with the stateless seed `(seed, i)`.
        momentum_storage: str. `"float32"` or `"int8"` (`keras_sphereface.training.centre_momentum`).

    Attributes:
        rows: the head's kernel as a `tf.Variable` `(units, dim)`.
        momentum: CentresMomentum `(units, dim)`: the SGD velocity of every row (checkpoint its `trackable`).
    """

    def __init__(self, head: keras.layers.Layer, num_sampled: int, seed: int, momentum_storage: str = "float32"):
        if not getattr(head, "classes_first", False):
            raise ValueError(f"Partial FC needs a head built with classes_first=True (its kernel as "
                             f"(units, dim) rows). Received: head {head.name!r} with kernel shape {head.kernel.shape}")
        self.units = int(head.units)
        self.num_sampled = int(num_sampled)
        self.seed = int(seed)
        self.rows = head.kernel.value
        self.momentum = CentresMomentum(tuple(self.rows.shape), momentum_storage)

    def sample(self, labels: tf.Tensor, step: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
        """`(index, sampled_labels)` of step `step`: int32 `(num_sampled,)` sorted class ids, int32 `(batch, 1)`."""
        seed = tf.stack([tf.constant(self.seed, tf.int64), tf.cast(step, tf.int64)])
        scores = tf.random.stateless_uniform([self.units], seed=seed, dtype=tf.float32)
        return sample_classes(labels, scores, self.num_sampled)

    def gather(self, index: tf.Tensor) -> tf.Tensor:
        """The sampled centres, `(num_sampled, embedding_dim)` float32 (a copy: differentiate through it)."""
        return tf.gather(self.rows, index)

    def apply_sgd(self, index: tf.Tensor, rows: tf.Tensor, grads: tf.Tensor, learning_rate: tf.Tensor,
                  momentum: float, weight_decay: float = 0.0, nesterov: bool = False) -> None:
        """SGD with momentum on the sampled rows only, as `keras.optimizers.SGD` computes it.

        `g = grads + weight_decay * rows`; `v = momentum * v - lr * g`; the rows move by `v`
        (`momentum * v - lr * g` with Nesterov). The other rows and their momentum are untouched.

        Args:
            index: int32 `(num_sampled,)` distinct class ids.
            rows: float32 `(num_sampled, dim)`: the centres of `index` before this update (`gather`).
            grads: float32 `(num_sampled, dim)`: the loss gradient with respect to `rows`.
            learning_rate: float32 scalar.
            momentum, weight_decay: float.
            nesterov: bool.
        """
        rows_sgd(self.rows, self.momentum, index, rows, grads, learning_rate, momentum, weight_decay, nesterov)


def rows_sgd(variable: tf.Variable, velocity: CentresMomentum, index: tf.Tensor | None, rows: tf.Tensor,
             grads: tf.Tensor, learning_rate: tf.Tensor, momentum: float, weight_decay: float = 0.0,
             nesterov: bool = False) -> None:
    """SGD with momentum (`keras.optimizers.SGD`'s update) on the rows `index` of `variable`, or on all of them.

    Args:
        variable: tf.Variable `(units, dim)`: the centres.
        velocity: CentresMomentum `(units, dim)`: their momentum.
        index: int32 `(n,)` distinct rows, or None: every row (`rows` and `grads` are then `(units, dim)`).
        rows: float32 `(n, dim)`: the rows before this update.
        grads: float32 `(n, dim)`: the loss gradient with respect to `rows`.
        learning_rate: float32 scalar.
        momentum, weight_decay: float.
        nesterov: bool.
    """
    if weight_decay:
        grads = grads + weight_decay * rows
    if index is None and velocity.storage == "float32":
        _fused_momentum(variable, velocity.values, grads, learning_rate, momentum, nesterov)
        return
    new_velocity = momentum * velocity.gather(index) - learning_rate * grads
    step = momentum * new_velocity - learning_rate * grads if nesterov else new_velocity
    velocity.scatter(index, new_velocity)
    if index is None:
        variable.assign_add(step)
    else:
        variable.scatter_add(tf.IndexedSlices(step, index))


def _fused_momentum(variable: tf.Variable, velocity: tf.Variable, grads: tf.Tensor, learning_rate: tf.Tensor,
                    momentum: float, nesterov: bool) -> None:
    """`rows_sgd` on every row with float32 momentum, as one in-place kernel (`ResourceApplyKerasMomentum`).

    The same update (`v = momentum * v - lr * g`, the rows move by `v`) without the `(units, dim)`
    temporaries of the new velocity and the step. Measured in docs/performance.md (a whole shard of 500k
    centres: 3.3 GB less at the process's peak, 0.71x the step time). The sampled rows keep the
    gather and scatter: TensorFlow's sparse form of this kernel measured 1.2x slower at 100k rows.
    """
    tf.raw_ops.ResourceApplyKerasMomentum(var=variable.handle, accum=velocity.handle,
                                          lr=tf.cast(learning_rate, variable.dtype), grad=grads,
                                          momentum=tf.constant(momentum, variable.dtype), use_nesterov=nesterov)
