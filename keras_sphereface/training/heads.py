"""The margin heads of `ksf train --head`, by name."""

from __future__ import annotations

import keras
import numpy as np

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


def make_head(name: str, units: int, options: dict | None = None, lambda_start: str = "schedule") -> keras.layers.Layer:
    """Builds the margin head `name` for `units` classes.

    Args:
        name: str. A key of `HEADS` (`"a-softmax"`, `"arcface"`, ...).
        units: int. Number of classes.
        options: dict or None. The head's keyword arguments (e.g. `{"m": 4}`, `{"s": 64, "m": 0.5}`).
        lambda_start: str. `"schedule"`, or `"floor"`: an A-Softmax head starts at its
            `annealed_iteration` (lambda = `lambda_min`) unless `options` sets `iteration`.

    Returns:
        The head layer, named `"head"` (float32 compute under any policy).

    Raises:
        ValueError: an unknown name or an option the head does not take.
    """
    if name not in HEADS:
        raise ValueError(f"Unknown head; use one of {list(HEAD_NAMES)}. Received: head={name!r}")
    try:
        head = HEADS[name](units, name="head", **dict(options or {}))
    except (TypeError, ValueError) as error:
        raise ValueError(f"Bad head_options for head {name!r}: {error}. Received: head_options={options!r}") from error
    if lambda_start == "floor" and hasattr(head, "annealed_iteration") and "iteration" not in (options or {}):
        head.initial_iteration = head.annealed_iteration
    return head


def current_lambda(head: keras.layers.Layer) -> float | None:
    """The A-Softmax lambda of `head`'s current `iteration`, or None (other heads, and m=1 stages, have none)."""
    if not hasattr(head, "lambda_at"):
        return None
    iteration = int(np.asarray(head.iteration))
    return float(head.lambda_at(iteration)) if head.margin_at(max(iteration, 1)) > 1 else None
