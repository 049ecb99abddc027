"""Keras models as `Embedder`s: a compiled forward pass at a fixed batch size, and a weights fingerprint."""

from __future__ import annotations

import hashlib
import json
from typing import TYPE_CHECKING

import numpy as np

from keras_sphereface.inference.embedder import Embedder
from keras_sphereface.models.folding import fold_batch_norms

if TYPE_CHECKING:
    import keras


def keras_fingerprint(model: keras.Model) -> str:
    """Hex SHA-256 of a Keras model's class, input/output shapes, layer types and every weight value."""
    digest = hashlib.sha256()
    digest.update(
        json.dumps(
            [
                model.__class__.__name__,
                str(model.input_shape),
                str(model.output_shape),
                [layer.__class__.__name__ for layer in model.layers],
            ]
        ).encode()
    )
    for weight in model.weights:
        value = np.ascontiguousarray(np.asarray(weight.numpy()))
        digest.update(f"{value.dtype}{value.shape}".encode())
        digest.update(value.tobytes())
    return digest.hexdigest()


def keras_embedder(model: keras.Model, preprocess: str = "ksf", batch_size: int = 64) -> Embedder:
    """Wraps a Keras model that maps `(batch, height, width, 3)` to `(batch, dim)` embeddings.

    Batches are padded to `batch_size` so the compiled predict function is traced once. The
    network runs with its BatchNormalizations folded into the convolutions before them
    (`keras_sphereface.models.fold_batch_norms`: the same embeddings, fewer ops per call); the
    fingerprint is that of `model` as given.

    Args:
        model: `keras.Model`. Its input must be `(None, height, width, 3)`.
        preprocess: str. A key of `PREPROCESSING`.
        batch_size: int. The padded batch size.
    """
    shape = model.input_shape
    if (
        isinstance(shape, list)
        or len(shape) != 4
        or shape[1] is None
        or shape[2] is None
        or shape[3] != 3
    ):
        raise ValueError(
            f"An embedding model needs one input of shape (None, height, width, 3) with a "
            f"known size. Received: input_shape={shape}"
        )

    served = fold_batch_norms(model)

    def predict(x: np.ndarray) -> np.ndarray:
        count = x.shape[0]
        if count < batch_size:
            x = np.concatenate([x, np.zeros((batch_size - count, *x.shape[1:]), x.dtype)])
        return np.asarray(served.predict_on_batch(x))[:count]

    return Embedder(
        predict,
        (shape[1], shape[2]),
        keras_fingerprint(model),
        preprocess,
        name=getattr(model, "name", "model"),
    )
