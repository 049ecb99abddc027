"""Embedding through a TensorFlow SavedModel (the TensorFlow-only loader of the inference floor)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from keras_sphereface.inference.embedder import Embedder

if TYPE_CHECKING:
    from keras_sphereface.inference.contract import Contract


def savedmodel_embedder(
    path: str | Path, preprocess: str, fingerprint: str, signature: str = "serving_default",
    name: str | None = None, contract: Contract | None = None,
) -> Embedder:
    """Wraps the `signature` of a SavedModel that maps `(batch, height, width, 3)` to embeddings.

    Args:
        path: str or path. The SavedModel directory (holding `saved_model.pb`).
        preprocess: str. A key of `keras_sphereface.models.preprocessing.PREPROCESSING`: what the exported
            function expects (`"ksf"` if it takes `(x - 127.5) / 128`, `"none"` if it takes raw pixels).
        fingerprint: str. Digest of the directory's files.
        signature: str. The signature to call.
        name: str or None. The embedder's name; default the directory's.
        contract: `Contract` or None. The export's preprocessing contract, kept on the embedder.
    """
    import tensorflow as tf

    path = Path(path)
    if not (path / "saved_model.pb").is_file():
        raise ValueError(
            f"Not a SavedModel directory (no saved_model.pb). Received: model={str(path)!r}"
        )
    loaded = tf.saved_model.load(str(path))
    if signature not in loaded.signatures:
        raise ValueError(
            f"The SavedModel has no signature {signature!r}; it has "
            f"{sorted(loaded.signatures)}. Received: signature={signature!r}"
        )
    function = loaded.signatures[signature]
    inputs = function.structured_input_signature[1]
    if len(inputs) != 1:
        raise ValueError(
            f"An embedding SavedModel needs exactly one input. Received: inputs={sorted(inputs)}"
        )
    ((input_name, spec),) = inputs.items()
    shape = spec.shape.as_list()
    if len(shape) != 4 or shape[1] is None or shape[2] is None or shape[3] != 3:
        raise ValueError(
            f"An embedding SavedModel needs an input (None, height, width, 3) of known size. "
            f"Received: {input_name} shape={shape}"
        )

    def predict(x: np.ndarray) -> np.ndarray:
        outputs = function(**{input_name: tf.constant(x, dtype=spec.dtype)})
        return next(iter(outputs.values())).numpy()

    return Embedder(predict, (shape[1], shape[2]), fingerprint, preprocess, name=name or path.name,
                    contract=contract)
