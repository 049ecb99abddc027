"""`build_training_model`: joins an embedding backbone and a margin head into the model `fit` trains."""

from __future__ import annotations

import keras


def build_training_model(backbone: keras.Model, head: keras.layers.Layer, name: str | None = None) -> keras.Model:
    """Joins an embedding model and a margin head into a model `[image, label] -> logits`.

    The head (e.g. `keras_sphereface.layers.MarginInnerProduct(10575, m=4)`, `ArcFace`, `CosFace`)
    applies its margin to the labelled class during `fit` (`training=True`) and returns plain
    logits at inference. Train with `SparseCategoricalCrossentropy(from_logits=True)`; the backbone
    keeps its own layers and weights, so after training `backbone` alone is the face embedder.

    Args:
        backbone: keras.Model. One input `(batch_size, height, width, 3)`, output
            `(batch_size, embedding_dim)`.
        head: keras.layers.Layer. A margin head called as `head([embeddings, labels], training=...)`.
        name: str or None. Model name; default `"<backbone name>_<head name>"`.

    Returns:
        A `keras.Model` with inputs `[image (batch_size, height, width, 3), label (batch_size,) int32]`
        and output logits `(batch_size, units)`, float32.
    """
    if not isinstance(backbone, keras.Model) or len(backbone.inputs) != 1 or len(backbone.outputs) != 1:
        raise ValueError(f"backbone must be a keras.Model with one input and one output. Received: "
                         f"backbone={backbone!r}")
    if len(backbone.output.shape) != 2:
        raise ValueError(f"backbone must output embeddings (batch_size, embedding_dim). Received: "
                         f"output shape={tuple(backbone.output.shape)}")
    if not isinstance(head, keras.layers.Layer):
        raise ValueError(f"head must be a Keras layer (a margin head). Received: head={head!r}")
    image = keras.Input(shape=backbone.input_shape[1:], name="image")
    label = keras.Input(shape=(), dtype="int32", name="label")
    logits = head([backbone(image), label])
    return keras.Model([image, label], logits, name=name or f"{backbone.name}_{head.name}")
