"""The Angular Fisher Score (SphereFace, Liu et al. 2017, appendix).

    AFS = S_w / S_b
    S_w = sum_i sum_{x_j in class i} (1 - cos(x_j, m_i))
    S_b = sum_i n_i (1 - cos(m_i, m))

with `m_i` the mean feature of class `i`, `n_i` its size and `m` the mean of all features.
Lower is better: classes are angularly compact and far apart.
"""

from __future__ import annotations

import numpy as np

from keras_sphereface.utils.vectors import l2_normalize_rows


def angular_fisher_score(embeddings: np.ndarray, labels: np.ndarray, normalize: bool = False) -> float:
    """Computes the Angular Fisher Score of labelled embeddings.

    Args:
        embeddings: `np.ndarray`, shape `(num_samples, dim)`. Features.
        labels: `np.ndarray`, shape `(num_samples,)`. Class of each feature (any hashable values
            NumPy can sort: ints or strings).
        normalize: bool. L2-normalize the features before the means are taken (the paper takes
            the means of the features as they are; the default).

    Returns:
        float. `S_w / S_b`; lower is better.

    Raises:
        ValueError: for mismatched shapes or fewer than two classes.
    """
    x = np.asarray(embeddings, dtype=np.float64)
    labels = np.asarray(labels)
    if x.ndim != 2 or labels.shape != (x.shape[0],):
        raise ValueError(
            f"embeddings must be (num_samples, dim) and labels (num_samples,). "
            f"Received: embeddings.shape={x.shape}, labels.shape={labels.shape}"
        )
    classes, index, counts = np.unique(labels, return_inverse=True, return_counts=True)
    if classes.size < 2:
        raise ValueError(
            f"The Angular Fisher Score needs at least two classes. Received: classes={classes.tolist()}"
        )
    if normalize:
        x = l2_normalize_rows(x)
    sums = np.zeros((classes.size, x.shape[1]))
    np.add.at(sums, index, x)
    class_means = sums / counts[:, None]
    overall_mean = x.mean(axis=0)
    within = np.sum(1.0 - np.sum(l2_normalize_rows(x) * l2_normalize_rows(class_means)[index], axis=1))
    between = np.sum(counts * (1.0 - l2_normalize_rows(class_means) @ l2_normalize_rows(overall_mean)))
    if between <= 0.0:
        raise ValueError(
            f"The between-class scatter is zero (all class means point the same way). "
            f"Received: S_b={between}"
        )
    return float(within / between)
