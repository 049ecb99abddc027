"""The convergence check: says when training has not started to learn, and what to change for the head."""

from __future__ import annotations

import math

from keras_sphereface.training.config import TrainConfig

#: What to try, per `--head`, when the loss stays at ln(classes) or the training accuracy at 0.
REMEDIES = {
    "a-softmax": ("lower lr (--lr); a larger lambda_min (head_options lambda_min = 10 or more keeps more of "
                  "the plain softmax); a staged margin (head_options m_schedule = [[0, 1], [N, 4]]: m=1 for N "
                  "steps, then m=4)"),
    "arcface": ("lower lr (--lr); a margin warm-up (head_options margin_warmup_steps = N: m rises from 0); a "
                "smaller margin or scale (head_options m = 0.3, s = 32)"),
    "cosface": ("lower lr (--lr); a margin warm-up (head_options margin_warmup_steps = N: m rises from 0); a "
                "smaller margin or scale (head_options m = 0.2, s = 32)"),
    "combined": ("lower lr (--lr); a margin warm-up (head_options margin_warmup_steps = N); smaller margins "
                 "(head_options m2 = 0.3, m3 = 0.1)"),
    "norm-softmax": "lower lr (--lr); a larger scale (head_options s = 32)",
    "sphereface-r": "lower lr (--lr); a smaller margin (head_options m = 1.2)",
}


class ConvergenceCheck:
    """Flags logged intervals that show no learning after `convergence_check_after` steps.

    An interval is flagged when its mean loss is above `(1 - convergence_tolerance) * ln(classes)`
    (an untrained head scores ln(classes); a margin head starts above it) or its training accuracy
    is 0.

    Args:
        config: TrainConfig. Uses `head`, `convergence_check_after`, `convergence_tolerance`.
        num_classes: int. The records' classes.
    """

    def __init__(self, config: TrainConfig, num_classes: int):
        self.after, self.head = config.convergence_check_after, config.head
        self.chance_loss = math.log(max(num_classes, 2))
        self.limit = (1.0 - config.convergence_tolerance) * self.chance_loss
        self.flagged = False

    def warning(self, step: int, loss: float, accuracy: float) -> str | None:
        """The warning for this interval, or None when it shows learning (or it is too early to say)."""
        if not self.after or step < self.after or not (math.isfinite(loss) and math.isfinite(accuracy)):
            return None
        reasons = []
        if loss > self.limit:
            reasons.append(f"loss {loss:.4g} is not below ln(classes) = {self.chance_loss:.4g}")
        if accuracy == 0:
            reasons.append("training accuracy is 0")
        if not reasons:
            return None
        return f"not converging at step {step}: {' and '.join(reasons)}"

    def remedies(self) -> str:
        """What to try for this head."""
        return REMEDIES.get(self.head, "lower lr (--lr)")
