"""Head names of `ksf train --head` and the learning-rate schedule of a run."""

from __future__ import annotations

import keras

from keras_sphereface import layers

#: `--head` name -> margin head class (`keras_sphereface.layers`).
HEADS: dict[str, type[layers.MarginHead]] = {
    "a-softmax": layers.MarginInnerProduct,
    "arcface": layers.ArcFace,
    "cosface": layers.CosFace,
    "combined": layers.CombinedMargin,
    "norm-softmax": layers.NormSoftmax,
    "sphereface-r": layers.SphereFaceR,
}
HEAD_NAMES: tuple[str, ...] = tuple(HEADS)


def make_head(name: str, units: int, options: dict | None = None) -> keras.layers.Layer:
    """Builds the margin head `name` for `units` classes.

    Args:
        name: str. A key of `HEADS` (`"a-softmax"`, `"arcface"`, ...).
        units: int. Number of classes.
        options: dict or None. The head's keyword arguments (e.g. `{"m": 4}`, `{"s": 64, "m": 0.5}`).

    Returns:
        The head layer, named `"head"` (float32 compute under any policy).

    Raises:
        ValueError: an unknown name or an option the head does not take.
    """
    if name not in HEADS:
        raise ValueError(f"Unknown head; use one of {list(HEAD_NAMES)}. Received: head={name!r}")
    try:
        return HEADS[name](units, name="head", **dict(options or {}))
    except (TypeError, ValueError) as error:
        raise ValueError(f"Bad head_options for head {name!r}: {error}. Received: head_options={options!r}") from error


def learning_rate_at(step: int, config) -> float:
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
