"""The run's embedding model: built from the config, and its float32 copy for saving and validation."""

from __future__ import annotations

import keras
import numpy as np

from keras_sphereface.models.zoo import get_model_spec
from keras_sphereface.training.config import TrainConfig
from keras_sphereface.training.inputs import input_size


def build_backbone(config: TrainConfig, weights: str | None = None) -> keras.Model:
    """The embedding model of `config` (zoo `model`, `input_size`, `embedding_dim`), float32 unless a policy is set.

    Args:
        config: TrainConfig.
        weights: None, a tag or a `.weights.h5` path (`config.weights` for training).

    Returns:
        keras.Model `(batch_size, height, width, 3) -> (batch_size, embedding_dim)`.
    """
    spec = get_model_spec(config.model)
    options = {"input_shape": (*input_size(config, spec), 3)}
    if config.embedding_dim is not None:
        options["embedding_dim"] = int(config.embedding_dim)
    return spec.build(weights=weights, **options)


def export_backbone(config: TrainConfig, backbone: keras.Model) -> keras.Model:
    """A float32 copy of a (possibly mixed-precision, distributed) backbone, outside any strategy."""
    previous = keras.mixed_precision.global_policy()
    keras.mixed_precision.set_global_policy("float32")
    try:
        clone = build_backbone(config)
        clone.set_weights([np.asarray(w) for w in backbone.get_weights()])
    finally:
        keras.mixed_precision.set_global_policy(previous)
    return clone
