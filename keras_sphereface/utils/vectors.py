"""L2 normalization of embedding rows in NumPy: the one home of "unit vectors" outside the graph."""

from __future__ import annotations

import numpy as np

# Norms below this are treated as this, so a zero vector stays zero instead of becoming NaN.
NORM_FLOOR = 1e-12


def l2_normalize_rows(vectors: np.ndarray) -> np.ndarray:
    """Scales each row (the last axis) of `vectors` to unit L2 norm.

    Args:
        vectors: `np.ndarray`, shape `(..., dim)`. Embeddings, any float dtype.

    Returns:
        `np.ndarray` of the same shape and dtype; rows with norm below `NORM_FLOOR` are divided by it.
    """
    vectors = np.asarray(vectors)
    norms = np.linalg.norm(vectors, axis=-1, keepdims=True)
    return vectors / np.maximum(norms, np.asarray(NORM_FLOOR, dtype=norms.dtype))
