"""`verify_pair`: two face images -> their cosine and same/different at a threshold whose origin is stated."""

from __future__ import annotations

import dataclasses
import os
from typing import TYPE_CHECKING, Any

import numpy as np

from keras_sphereface.data.face_source import FaceError
from keras_sphereface.inference.embedder import Embedder
from keras_sphereface.inference.files import embed_image_files
from keras_sphereface.inference.image_files import files_source
from keras_sphereface.inference.load import open_face_model

if TYPE_CHECKING:
    from keras_sphereface.utils.types import ModelLike


@dataclasses.dataclass(frozen=True)
class PairVerification:
    """The outcome of `verify_pair`.

    Attributes:
        path_a, path_b: str. The two images.
        score: float. Cosine of the two (L2-normalized) embeddings, in `[-1, 1]`.
        threshold: float or None. The threshold used (`same` is `score > threshold`).
        threshold_origin: str. Where the threshold came from (or why there is none).
        same: bool or None. The decision; None without a threshold.
    """

    path_a: str
    path_b: str
    score: float
    threshold: float | None
    threshold_origin: str
    same: bool | None

    def summary(self) -> str:
        """Lines for the terminal: score, decision, threshold and its origin."""
        decision = "unknown (no threshold)" if self.same is None else ("same person" if self.same else
                                                                       "different people")
        return (f"score {self.score:.4f}  ->  {decision}\n"
                f"threshold: {self.threshold_origin}")


def decision_threshold(embedder: Embedder, threshold: float | None) -> tuple[float | None, str]:
    """`(value, origin)` of the cosine threshold a decision uses: the given one, else the export contract's,
    else none (and why). `verify_pair` and `search_images` decide with it."""
    contract = embedder.contract
    if threshold is not None:
        return float(threshold), f"{float(threshold):.4f} given on the command line (--threshold)"
    if contract is not None and contract.threshold is not None:
        return float(contract.threshold), contract.describe_threshold()
    if contract is not None:
        return None, "none: the export's contract records no threshold"
    return None, f"none: {embedder.description} carries no threshold; pass --threshold or use an export"


def verify_pair(
    image_a: str | os.PathLike,
    image_b: str | os.PathLike,
    model: ModelLike | Embedder,
    weights: str | os.PathLike | None = None,
    align: str = "aligned",
    landmarks: str | os.PathLike | None = None,
    threshold: float | None = None,
    detector: Any = None,
) -> PairVerification:
    """Scores two face images and decides same/different.

    Both images are embedded in one batch through `embed_images` (no cache). The threshold is
    `threshold` when given, else the export contract's; a zoo model or `.keras` file has none unless
    given (the score is still returned, `same` is None).

    Args:
        image_a, image_b: str or path-like. The two image files.
        model, weights, align, landmarks, detector: as for `keras_sphereface.inference.files.embed_files`
            (`model` may be an `Embedder` from `open_face_model`).
        threshold: float or None. A cosine in `[-1, 1]` that overrides the stored threshold.

    Returns:
        A `PairVerification`.

    Raises:
        FaceError: either image has no usable face (the message names it and why).
        ContractError, ValueError, FileNotFoundError: bad model or inputs.
    """
    embedder = open_face_model(model, weights)
    paths = [image_a, image_b]
    table = embed_image_files(embedder, paths, files_source(embedder, paths, align, landmarks, detector), batch_size=2)
    if table.failures:
        raise FaceError(table.failures[0][1])
    a, b = table.embeddings.astype(np.float64)
    score = float(np.clip(np.dot(a, b), -1.0, 1.0))
    value, origin = decision_threshold(embedder, threshold)
    same = None if value is None else bool(score > value)
    return PairVerification(str(image_a), str(image_b), score, value, origin, same)
