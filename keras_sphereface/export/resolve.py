"""Which Keras network is exported, its name and its pixel preprocessing.

Only the embedding network is exported: a training model `[image, label] -> logits` (see
`keras_sphereface.models.training_model.build_training_model`) is reduced to its backbone, and the margin
head is never part of an export.
"""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path

import keras


@dataclasses.dataclass(frozen=True)
class ResolvedModel:
    """An embedding network ready to export.

    Attributes:
        model: `keras.Model`. Maps preprocessed faces `(batch, height, width, 3)` to `(batch, dim)`.
        name: str. Model name for the export folder and the contract (`"mobilefacenet"`).
        preprocessing: str. Key of `keras_sphereface.models.preprocessing.PREPROCESSING`.
        weights: str or None. The weights it was built with, for reports (zoo models only).
    """

    model: keras.Model
    name: str
    preprocessing: str
    weights: str | None = None

    @property
    def input_size(self) -> tuple[int, int]:
        """`(height, width)` of the model input, in pixels."""
        shape = self.model.input_shape
        return int(shape[1]), int(shape[2])

    @property
    def embedding_dim(self) -> int:
        """Length of the network's embedding (before any flip fusion)."""
        return int(self.model.output_shape[-1])


def _is_embedding_network(model: keras.Model) -> bool:
    inputs, outputs = model.inputs or [], model.outputs or []
    if len(inputs) != 1 or len(outputs) != 1:
        return False
    shape = tuple(inputs[0].shape)
    return len(shape) == 4 and shape[3] == 3 and None not in shape[1:3] and len(outputs[0].shape) == 2


def embedding_network(model: keras.Model) -> keras.Model:
    """The face-embedding part of `model`.

    Args:
        model: `keras.Model`. Either an embedding network (one input `(batch, height, width, 3)`
            of known size, one output `(batch, dim)`), or a training model whose sub-model is one
            (e.g. `build_training_model(backbone, head)`: the backbone is returned, the head dropped).

    Returns:
        The embedding `keras.Model`.

    Raises:
        ValueError: no embedding network found.
    """
    if not isinstance(model, keras.Model):
        raise ValueError(f"Expected a keras.Model. Received: model={model!r}")
    if _is_embedding_network(model):
        return model
    candidates = [layer for layer in model.layers if isinstance(layer, keras.Model) and _is_embedding_network(layer)]
    if len(candidates) == 1:
        return candidates[0]
    raise ValueError(
        "Cannot find the embedding network to export: expected a model with one input "
        "(batch, height, width, 3) of known size and one output (batch, dim), or a training model holding "
        f"exactly one such sub-model. Received: model {model.name!r} with input_shape={model.input_shape}, "
        f"output_shape={model.output_shape}, {len(candidates)} candidate sub-models"
    )


def resolve_model(
    model: str | os.PathLike | keras.Model,
    weights: str | None = None,
    preprocessing: str | None = None,
) -> ResolvedModel:
    """Loads or wraps the model to export.

    Args:
        model: str, path-like or `keras.Model`. A zoo name (`keras_sphereface.models.zoo.MODEL_NAMES`,
            case-insensitive), a `.keras` file, or a model.
        weights: str or None. Zoo models only: None (random), a named source (`"casia"`) or a file.
        preprocessing: str or None. Pixel mapping key; None takes the zoo's (`"ksf"` for every model
            here, and for `.keras` files and Keras models, which are trained on the zoo's mapping).

    Returns:
        A `ResolvedModel`.

    Raises:
        ValueError: unknown name, weights given with a file/model, or no embedding network.
        FileNotFoundError: a `.keras` path that does not exist.
    """
    from keras_sphereface.models.preprocessing import get_preprocessing
    from keras_sphereface.models.zoo import get_model_spec

    if isinstance(model, keras.Model):
        if weights is not None:
            raise ValueError(f"A Keras model holds its own weights. Received: weights={weights!r}")
        network = embedding_network(model)
        name, key = network.name, preprocessing or "ksf"
    else:
        path = Path(model)
        if path.suffix in (".keras", ".h5") or path.is_file():
            if not path.is_file():
                raise FileNotFoundError(f"Model file not found. Received: model={str(model)!r}")
            if weights is not None:
                raise ValueError(f"A model file holds its own weights. Received: weights={weights!r}")
            import keras_sphereface.layers
            import keras_sphereface.models  # noqa: F401  (registers the custom objects)

            network = embedding_network(keras.saving.load_model(path, compile=False))
            name, key = network.name, preprocessing or "ksf"
        else:
            spec = get_model_spec(str(model))
            network = spec.build(weights=weights)
            name, key = spec.name, preprocessing or spec.preprocessing
    get_preprocessing(key)  # validates the key
    return ResolvedModel(network, name, key, None if weights is None else os.fspath(weights))
