"""The learning-rate schedule of a run: the rate of each global step (batch-scaled, warmed up, as Caffe)."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from keras_sphereface.training.config import TrainConfig


def batch_scale(config: TrainConfig) -> float:
    """The factor from the configured `lr` (for `lr_reference_batch` images) to the rate applied at `batch_size`."""
    return config.batch_size / config.lr_reference_batch


def warmup_length(config: TrainConfig) -> int:
    """The warm-up's steps: `warmup_steps`, else `warmup_fraction` of the run (`steps`, rounded up)."""
    if config.warmup_steps:
        return int(config.warmup_steps)
    if not config.warmup_fraction or not config.steps:
        return 0
    return math.ceil(config.warmup_fraction * config.steps)


def learning_rate_at(step: int, config: TrainConfig) -> float:
    """The learning rate of the update after `step` completed global steps (0-based).

    The schedule (Caffe's multistep, insightface's polynomial, or constant) of the batch-scaled
    base rate `lr * batch_size / lr_reference_batch`, after a linear warm-up from
    `rate / warmup` to the rate over the first `warmup_length(config)` steps.

    Args:
        step: int. Global steps already done.
        config: TrainConfig. Uses `lr`, `lr_reference_batch`, `batch_size`, `lr_schedule`,
            `lr_boundaries`, `lr_decay`, `lr_power`, `warmup_steps`, `warmup_fraction` and the
            run length `steps`.

    Returns:
        float, the learning rate.
    """
    rate = config.lr * batch_scale(config)
    warmup = warmup_length(config)
    if warmup and step < warmup:
        return rate * (step + 1) / warmup
    if config.lr_schedule == "piecewise":
        drops = sum(1 for boundary in config.lr_boundaries if step >= boundary)
        return rate * config.lr_decay**drops
    if config.lr_schedule == "polynomial":
        total = max(1, (config.steps or 1) - warmup)
        done = min(step - warmup, total)
        return rate * (1.0 - done / total) ** config.lr_power
    return rate
