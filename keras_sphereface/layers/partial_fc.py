"""Partial FC on `keras.ops`: the class centres one step samples, and a margin head's logits over them.

Partial FC (An et al., 2022) computes a step's logits over a sample of the classes instead of all
of them: every class present in the batch (the positives), then uniformly drawn negatives up to
`num_sampled` centres. Labels are remapped to positions in the sample. The head's own margin
(`margin_logits`) runs unchanged on the gathered centres, so every margin head samples alike and
A-Softmax's `iteration` (lambda) and a margin warm-up advance once per step as without sampling.

The centres are passed in as `(units, embedding_dim)` rows (insightface's layout: a row gather, and
a row scatter to update only the sampled rows); the random scores come from the caller, so the
sample is a pure function of its inputs (seeded per step by the training code, which keeps a
resumed run's samples identical).
"""

from __future__ import annotations

import math

from keras import ops

from keras_sphereface.layers.base import MarginHead
from keras_sphereface.utils.types import Tensor

# A score above every uniform draw in [0, 1): positives always win the top-k.
_POSITIVE_SCORE = 2.0


def sampled_count(units: int, sample_rate: float, global_batch: int) -> int:
    """The number of centres a step samples: `ceil(sample_rate * units)`, at least one per batch row, at most `units`.

    At least `global_batch` so that every positive of the batch fits (a batch has at most that many
    distinct classes); insightface makes the same guarantee.

    Args:
        units: int. Number of classes (of this shard).
        sample_rate: float in (0, 1].
        global_batch: int. Labels per step.

    Raises:
        ValueError: `sample_rate` outside (0, 1].
    """
    if isinstance(sample_rate, bool) or not isinstance(sample_rate, (int, float)) or not 0 < sample_rate <= 1:
        raise ValueError(f"`sample_rate` must be a number in (0, 1]. Received: sample_rate={sample_rate!r}")
    return int(min(units, max(math.ceil(sample_rate * units), global_batch)))


def sample_classes(labels: Tensor, scores: Tensor, num_sampled: int,
                   present: Tensor | None = None) -> tuple[Tensor, Tensor]:
    """The sorted class ids of one step's sample (all positives, then the best-scoring negatives) and remapped labels.

    Args:
        labels: int tensor `(batch_size,)` or `(batch_size, 1)`, values in `[0, units)` where `present`.
        scores: float32 tensor `(units,)`, uniform in [0, 1): the random draw that picks negatives.
        num_sampled: int, at least the number of distinct present labels (see `sampled_count`).
        present: bool tensor `(batch_size,)` or None (all). The labels of this shard's classes; the
            others are no positives here (their remapped label is meaningless).

    Returns:
        `(index, sampled_labels)`: int32 `(num_sampled,)` class ids in increasing order, containing
        every present label; int32 `(batch_size, 1)` positions of each present label in `index`.
    """
    labels = ops.reshape(ops.cast(labels, "int32"), (-1,))
    units = ops.shape(scores)[0]
    if present is None:
        present = ops.ones_like(labels, dtype="bool")
    inside = ops.where(present, labels, 0)
    hits = ops.scatter(ops.expand_dims(inside, 1), ops.cast(present, "int32"), (units,))  # duplicates add up
    marked = ops.where(hits > 0, ops.cast(_POSITIVE_SCORE, scores.dtype), scores)
    _, index = ops.top_k(marked, num_sampled, sorted=False)
    index = ops.sort(ops.cast(index, "int32"))
    sampled_labels = ops.searchsorted(index, inside, side="left")
    return index, ops.reshape(ops.cast(sampled_labels, "int32"), (-1, 1))


def sampled_margin_logits(head: MarginHead, embeddings: Tensor, centres: Tensor, sampled_labels: Tensor) -> Tensor:
    """`head`'s training logits over gathered centres: `(batch_size, num_sampled)` float32, margin on the target.

    Equal to the full head's training logits restricted to the sampled columns (the margin touches
    only the target column, and each column depends only on its own centre).

    Args:
        head: MarginHead (built). Its margin, scale, lambda and counters are used; its own `kernel` is not.
        embeddings: float tensor `(batch_size, embedding_dim)`.
        centres: float tensor `(num_sampled, embedding_dim)`: the sampled rows of the class centres.
        sampled_labels: int32 `(batch_size, 1)` positions in the sample (`sample_classes`).
    """
    embeddings = ops.cast(embeddings, head.compute_dtype)
    kernel = ops.transpose(ops.cast(centres, head.compute_dtype))
    return head.margin_logits(embeddings, kernel, sampled_labels)
