"""Named hooks into a training run: what `train(config, callbacks=...)` calls, and when."""

from __future__ import annotations

from collections.abc import Sequence


class TrainCallback:
    """Override the hooks you need; each is called on every worker, in this order within a step.

    - `on_pass_start(epoch)`: a pass over the records was opened (also the first one, and on resume).
    - `on_batches(step, batches)`: the per-replica `(images, labels)` batches step `step` (1-based)
      is about to train on.
    - `on_step_end(step, loss)`: the update of step `step` is applied; `loss` its mean cross-entropy.
    - `on_log(row)`: a row of figures was written (`keras_sphereface.training.logs.METRIC_FIELDS`).
    - `on_checkpoint(step, path)`: checkpoint `step` is complete (`path` None on a non-chief worker).
    - `on_validate(step, accuracy)`: validation on the pair list gave `accuracy`.
    """

    def on_pass_start(self, epoch: int) -> None:
        """A pass over the records was opened."""

    def on_batches(self, step: int, batches: list) -> None:
        """Step `step` is about to train on `batches` (one `(images, labels)` per local replica)."""

    def on_step_end(self, step: int, loss: float) -> None:
        """Step `step`'s update is applied."""

    def on_log(self, row: dict) -> None:
        """A row of figures was logged."""

    def on_checkpoint(self, step: int, path: str | None) -> None:
        """Checkpoint `step` was written."""

    def on_validate(self, step: int, accuracy: float) -> None:
        """Validation at `step` gave `accuracy`."""


class CallbackList(TrainCallback):
    """Calls each hook of several callbacks in order."""

    def __init__(self, callbacks: Sequence[TrainCallback] = ()):
        self.callbacks = list(callbacks)

    def _each(self, hook: str, *args) -> None:
        for callback in self.callbacks:
            getattr(callback, hook)(*args)

    def on_pass_start(self, epoch: int) -> None:
        self._each("on_pass_start", epoch)

    def on_batches(self, step: int, batches: list) -> None:
        self._each("on_batches", step, batches)

    def on_step_end(self, step: int, loss: float) -> None:
        self._each("on_step_end", step, loss)

    def on_log(self, row: dict) -> None:
        self._each("on_log", row)

    def on_checkpoint(self, step: int, path: str | None) -> None:
        self._each("on_checkpoint", step, path)

    def on_validate(self, step: int, accuracy: float) -> None:
        self._each("on_validate", step, accuracy)
