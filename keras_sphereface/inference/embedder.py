"""`Embedder`: a face-embedding model with its input size, preprocessing and fingerprint.

The bottom of the inference floor: every loader (`keras_loader`, `savedmodel`) returns one, and
`embed_images` drives one. NumPy in, NumPy out; no framework import here.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

import numpy as np

from keras_sphereface.models.preprocessing import get_preprocessing

if TYPE_CHECKING:
    from keras_sphereface.inference.contract import Contract


class Embedder:
    """A face-embedding model with its input size, preprocessing and fingerprint.

    Args:
        predict: callable. Maps a float32 batch `(batch_size, height, width, 3)` (already
            preprocessed) to embeddings `(batch_size, dim)`.
        input_size: tuple of 2 ints. The `(height, width)` the model takes.
        fingerprint: str. Hex digest identifying the model's architecture and weights.
        preprocess: str. A key of `keras_sphereface.models.preprocessing.PREPROCESSING` (`"ksf"` is
            `(x - 127.5) / 128`; `"none"` for models that scale inside their graph).
        name: str. For reports.
        contract: `keras_sphereface.inference.contract.Contract` or None. The preprocessing contract of an
            export (`ksf export`), which callers check their crops against; None for other models.
    """

    def __init__(
        self,
        predict: Callable[[np.ndarray], np.ndarray],
        input_size: tuple[int, int],
        fingerprint: str,
        preprocess: str = "ksf",
        name: str = "model",
        contract: Contract | None = None,
    ):
        self._preprocess_fn = get_preprocessing(preprocess)
        self._predict = predict
        self.input_size = tuple(int(v) for v in input_size)
        self.fingerprint = fingerprint
        self.preprocess = preprocess
        self.name = name
        self.contract = contract

    @property
    def description(self) -> str:
        """What embeds, for messages: `"model <name>"`, or `"the export <name>"` when it carries a contract."""
        return f"the export {self.name}" if self.contract is not None else f"model {self.name}"

    def __call__(self, images: np.ndarray) -> np.ndarray:
        """Embeds aligned RGB `uint8` faces `(batch, height, width, 3)` into float32 `(batch, dim)`."""
        images = np.asarray(images)
        if images.ndim != 4 or tuple(images.shape[1:3]) != self.input_size:
            raise ValueError(
                f"{self.name} takes images of size {self.input_size} (height, width). "
                f"Received: images.shape={images.shape}"
            )
        out = self._predict(self._preprocess_fn(images))
        out = np.asarray(out, dtype=np.float32)
        return out.reshape(out.shape[0], -1)
