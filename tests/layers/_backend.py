"""Backend-neutral helpers for the layer tests (they run under TensorFlow and JAX)."""

from __future__ import annotations

import keras
import numpy as np


def gradients(fn, *args):
    """Gradients of `sum(fn(*args))` with respect to each array in `args`, as NumPy arrays."""
    backend = keras.backend.backend()
    if backend == "tensorflow":
        import tensorflow as tf

        tensors = [tf.Variable(np.asarray(a)) for a in args]
        with tf.GradientTape() as tape:
            total = tf.reduce_sum(fn(*tensors))
        return [g.numpy() for g in tape.gradient(total, tensors)]
    if backend == "jax":
        import jax
        import jax.numpy as jnp

        grads = jax.grad(lambda *a: jnp.sum(fn(*a)), argnums=tuple(range(len(args))))(
            *[jnp.asarray(a) for a in args]
        )
        return [np.asarray(g) for g in grads]
    if backend == "torch":
        import torch

        tensors = [torch.tensor(np.asarray(a), requires_grad=True) for a in args]
        fn(*tensors).sum().backward()
        return [t.grad.numpy() for t in tensors]
    raise NotImplementedError(backend)


def numpy(x) -> np.ndarray:
    if hasattr(x, "detach"):  # torch tensors that require grad
        x = x.detach()
    return np.asarray(keras.ops.convert_to_numpy(x))


def keeps_float64() -> bool:
    """Whether this backend's `keras.ops` keep float64 inputs in float64.

    Keras' torch backend computes some ops (matmul, sqrt after maximum with a Python float) in
    float32 even for float64 inputs; float64-precision comparisons loosen their tolerances there.
    """
    ones = np.ones((1, 1), dtype=np.float64)
    return numpy(keras.ops.matmul(ones, ones)).dtype == np.float64
