"""The learning-rate schedule of a run: the rate of each global step, as Caffe computes it."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from keras_sphereface.training.config import TrainConfig


def learning_rate_at(step: int, config: TrainConfig) -> float:
    """The learning rate of the update after `step` completed global steps (0-based), as Caffe.

    Args:
        step: int. Global steps already done.
        config: TrainConfig. Uses `lr`, `lr_schedule`, `lr_boundaries`, `lr_decay`, `lr_power`,
            `warmup_steps` and the run length `steps` (for the polynomial schedule).

    Returns:
        float, the learning rate.
    """
    if config.warmup_steps and step < config.warmup_steps:
        return config.lr * (step + 1) / config.warmup_steps
    if config.lr_schedule == "piecewise":
        drops = sum(1 for boundary in config.lr_boundaries if step >= boundary)
        return config.lr * config.lr_decay**drops
    if config.lr_schedule == "polynomial":
        total = max(1, (config.steps or 1) - config.warmup_steps)
        done = min(step - config.warmup_steps, total)
        return config.lr * (1.0 - done / total) ** config.lr_power
    return config.lr
