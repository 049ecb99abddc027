"""`train(config)`: the driver behind `ksf train`, wiring input, step, checkpoints, logs and validation.

Each global step: the learning rate of the schedule, one step (`step.make_train_step`) on this
worker's batches (`inputs.EpochInput`), the non-finite check, then the named hooks in order: log
(`logs.TrainLogger`, every `log_every`), checkpoint (`checkpoints.CheckpointSaver`, every
`checkpoint_every`), validate (pair list, `.bin` sets, every `validate_every`, chief), stop (a signal
or the time limit). `callbacks.TrainCallback` objects passed to `train` see the same hooks. What
a checkpoint holds and how a run resumes: `checkpoints` and `state`.
"""

from __future__ import annotations

import dataclasses
import math
import shutil
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

import keras
import numpy as np
import tensorflow as tf

from keras_sphereface.models.zoo import ModelSpec, get_model_spec
from keras_sphereface.training import inputs, validation
from keras_sphereface.training.backbone import export_backbone
from keras_sphereface.training.callbacks import CallbackList, TrainCallback
from keras_sphereface.training.checkpoints import CHECKPOINT_DIR
from keras_sphereface.training.config import TrainConfig
from keras_sphereface.training.distribute import Placement, make_placement
from keras_sphereface.training.guard import ConvergenceCheck
from keras_sphereface.training.head_memory import check_run_head
from keras_sphereface.training.heads import current_lambda
from keras_sphereface.training.inputs import RecordsError, RecordsInfo, check_worker_shards, read_records_info
from keras_sphereface.training.logs import TrainLogger
from keras_sphereface.training.outputs import (
    FINAL_KERAS,
    FINAL_WEIGHTS,
    register_run,
    resolve_seed,
    save_final_model,
    write_config,
)
from keras_sphereface.training.schedule import batch_scale, learning_rate_at, warmup_length
from keras_sphereface.training.signals import StopSignals
from keras_sphereface.training.state import RunState, build_state
from keras_sphereface.training.step import loss_scale, make_train_step


class NonFiniteLossError(RuntimeError):
    """Training produced a non-finite loss (`on_nan="stop"`); the last good checkpoint is kept.

    Attributes:
        step: int. The global step (1-based) whose loss was not finite.
        checkpoint: str or None. The newest checkpoint on disk (from before that step).
    """

    def __init__(self, step: int, loss: float, checkpoint: str | None):
        self.step, self.loss, self.checkpoint = step, loss, checkpoint
        kept = f"the last good checkpoint is {checkpoint}" if checkpoint else "no checkpoint was written yet"
        super().__init__(
            f"Non-finite loss ({loss}) at step {step}; training stopped and nothing was saved after it "
            f"({kept}). Lower the learning rate (--lr), or pass on_nan='skip' to skip such batches."
        )


@dataclasses.dataclass
class TrainResult:
    """What a `train` call did.

    Attributes:
        out: Path. The output folder.
        step: int. Global steps done (over all runs of this folder).
        epoch: float. Passes over the training records.
        loss: float. Mean training loss of the last logged interval (NaN when none).
        accuracy: float. Training accuracy of the last logged interval (margin logits).
        current_lambda: float or None. The A-Softmax lambda of the last step (None for other heads).
        val_accuracy: float or None. The last validation accuracy (the pair list's, else the first `.bin` set's).
        resumed_from: int or None. Step of the checkpoint the run resumed from.
        stopped: str. `"completed"`, `"time limit"`, `"SIGTERM"` or `"SIGINT"`.
        skipped_steps: list of int. Steps whose update was skipped (`on_nan="skip"`).
        final_keras, final_weights: Path or None. The final embedding model files (chief only).
        checkpoint: str or None. The newest checkpoint.
        tag_file: Path or None. The registered weights when `tag` was given.
        model: keras.Model or None. The trained embedding model (float32 copy, no head) on every
            worker; None when a signal stopped the run.
    """

    out: Path
    step: int
    epoch: float
    loss: float
    accuracy: float
    current_lambda: float | None
    val_accuracy: float | None
    resumed_from: int | None
    stopped: str
    skipped_steps: list[int]
    final_keras: Path | None
    final_weights: Path | None
    checkpoint: str | None
    tag_file: Path | None = None
    model: keras.Model | None = dataclasses.field(default=None, repr=False)

    @property
    def interrupted(self) -> bool:
        """Whether a signal stopped the run (it can be resumed)."""
        return self.stopped in ("SIGTERM", "SIGINT")


@dataclasses.dataclass
class _Run:
    """One `train` call's fixed facts, shared by the driver's hooks."""

    config: TrainConfig
    spec: ModelSpec
    records: RecordsInfo
    placement: Placement
    out: Path
    work_dir: Path
    steps_per_epoch: int | None
    bin_sets: list = dataclasses.field(default_factory=list)
    started: float = dataclasses.field(default_factory=time.perf_counter)

    def epoch_of(self, step: int) -> float:
        return step / self.steps_per_epoch if self.steps_per_epoch else 0.0

    def wall_s(self) -> float:
        return round(time.perf_counter() - self.started, 1)


class _Interval:
    """The training figures of the steps since the last log row; images/s counts step time only."""

    def __init__(self):
        self.reset()
        self.last = {"loss": float("nan"), "accuracy": float("nan")}

    def reset(self) -> None:
        self.start, self.steps, self.loss_sum, self.correct_sum = time.perf_counter(), 0, 0.0, 0.0

    def add(self, loss: float, correct: float) -> None:
        self.loss_sum += loss
        self.correct_sum += correct
        self.steps += 1

    def pause(self, seconds: float) -> None:
        self.start += seconds

    def close(self, batch_size: int) -> dict:
        """The interval's `loss`, `accuracy` and `images_per_s`; starts the next interval."""
        seconds = max(time.perf_counter() - self.start, 1e-9)
        if self.steps:
            self.last = {"loss": self.loss_sum / self.steps, "accuracy": self.correct_sum / (self.steps * batch_size)}
        else:
            self.last = {"loss": float("nan"), "accuracy": float("nan")}
        figures = {**self.last, "images_per_s": self.steps * batch_size / seconds}
        self.reset()
        return figures


def _time_is_up(run: _Run) -> bool:
    limit = run.config.time_limit_minutes
    return limit is not None and time.perf_counter() - run.started >= 60.0 * limit


def _validate(run: _Run, model: keras.Model) -> dict:
    return validation.validation_figures(model, run.config, run.bin_sets, preprocess=run.spec.preprocessing)


def _resume_message(run: _Run, state: RunState) -> str:
    epoch = f", epoch {run.epoch_of(state.resumed_from):.2f}" if run.steps_per_epoch else ""
    lam = current_lambda(state.head)
    lam_text = "" if lam is None else f", lambda {lam:.4g}"
    return f"Resuming from {state.restored_path}: step {state.resumed_from}{epoch}{lam_text}{state.input_note}"


def _lambda_start_text(config: TrainConfig, state: RunState) -> str:
    """How a new A-Softmax head's lambda starts (`lambda_start`), for the start message; else ''."""
    if not hasattr(state.head, "lambda_at"):
        return ""
    iteration = int(np.asarray(state.head.iteration))
    return (f"; A-Softmax lambda starts at {float(state.head.lambda_at(iteration + 1)):.4g} "
            f"(iteration {iteration}, lambda_start={config.lambda_start!r})")


def _rate_message(config: TrainConfig) -> str:
    """The configured and the applied learning rate, the warm-up and the clipping, said at the start."""
    clip = f"gradient norm clipped at {config.clip_norm:g}" if math.isfinite(config.clip_norm) else "no clipping"
    warmup = warmup_length(config)
    return (f"Learning rate {config.lr:g} per {config.lr_reference_batch} images -> "
            f"{config.lr * batch_scale(config):.4g} at batch {config.batch_size}; "
            f"{f'linear warm-up over {warmup} steps' if warmup else 'no warm-up'}; {clip}")


def _drive(run: _Run, state: RunState, logger: TrainLogger, callbacks: TrainCallback) -> TrainResult:
    """Runs the steps to `config.steps` (or a stop), then saves; returns what happened."""
    config, chief = run.config, run.placement.is_chief
    train_step = make_train_step(config, state.model, state.optimizer, state.global_step, run.placement,
                                 state.centres)
    step = int(state.global_step.numpy())
    interval = _Interval()
    check = ConvergenceCheck(config, run.records.num_classes)
    val_accuracy, skipped, stopped = None, [], "completed"
    scale_before = loss_scale(state.optimizer)
    with StopSignals() as signals:
        while step < config.steps:
            learning_rate = learning_rate_at(step, config)
            batches = state.inputs.next_batches()
            callbacks.on_batches(step + 1, batches)
            cross_entropy, correct = train_step(tf.constant(learning_rate, tf.float32), batches)
            step += 1
            loss_value = float(cross_entropy)
            if not math.isfinite(loss_value):
                if config.on_nan == "stop":
                    raise NonFiniteLossError(step, loss_value, state.saver.latest if chief else None)
                skipped.append(step)
                scale_before = loss_scale(state.optimizer)
                logger.message(f"step {step}: non-finite loss ({loss_value}); update skipped")
            else:
                scale_now = loss_scale(state.optimizer)
                if config.precision != "mixed_float16" and scale_now is not None and scale_before is not None \
                        and scale_now < scale_before:
                    skipped.append(step)
                    logger.message(f"step {step}: non-finite gradients; update skipped")
                scale_before = scale_now
                interval.add(loss_value, float(correct))
            callbacks.on_step_end(step, loss_value)
            if step % config.log_every == 0 or step == config.steps:  # hook: log
                figures = interval.close(config.batch_size)
                if chief:
                    warning = check.warning(step, figures["loss"], figures["accuracy"])
                    row = {"step": step, "epoch": run.epoch_of(step), **figures, "lambda": current_lambda(state.head),
                           "lr": learning_rate, "wall_s": run.wall_s(), "warning": warning or ""}
                    if warning and not check.flagged:
                        logger.message(f"Warning: {warning}; training goes on. Try: {check.remedies()}.")
                    check.flagged = bool(warning)
                    logger.log(row)
                    callbacks.on_log(row)
            paused = time.perf_counter()
            if step % config.checkpoint_every == 0 and step < config.steps:  # hook: checkpoint
                callbacks.on_checkpoint(step, state.saver.save())
            validating = config.validate_pairs or run.bin_sets
            if validating and chief and step % config.validate_every == 0 and step < config.steps:
                figures = _validate(run, export_backbone(config, state.backbone))  # hook: validate
                val_accuracy = validation.headline(figures)
                logger.log({"step": step, "epoch": run.epoch_of(step), **figures, "wall_s": run.wall_s()})
                callbacks.on_validate(step, val_accuracy)
            interval.pause(time.perf_counter() - paused)
            if signals.received:  # hook: stop
                stopped = signals.received
                break
            if _time_is_up(run):
                stopped = "time limit"
                break
        checkpoint_path = state.saver.save()
        callbacks.on_checkpoint(step, checkpoint_path)
    return TrainResult(out=run.out, step=step, epoch=run.epoch_of(step), loss=interval.last["loss"],
                       accuracy=interval.last["accuracy"], current_lambda=current_lambda(state.head),
                       val_accuracy=val_accuracy, resumed_from=state.resumed_from, stopped=stopped,
                       skipped_steps=skipped, final_keras=None, final_weights=None, checkpoint=checkpoint_path)


def _finish(run: _Run, state: RunState, logger: TrainLogger, callbacks: TrainCallback,
            result: TrainResult) -> TrainResult:
    """After the last step: the final model (chief: saved, validated, tagged), or the resume hint on a signal."""
    config, out, step = run.config, run.out, result.step
    chief = run.placement.is_chief
    if result.interrupted:
        logger.close()
        if chief:
            print(f"{result.stopped} received: checkpoint saved at step {step} ({result.checkpoint}). Resume by "
                  f"running the same command again (same --out {out}).", flush=True)
        return result
    result.model = export_backbone(config, state.backbone)
    if not chief:
        return result
    result.final_keras, result.final_weights = save_final_model(result.model, out, step, result.checkpoint)
    if config.validate_pairs or run.bin_sets:
        figures = _validate(run, result.model)
        result.val_accuracy = validation.headline(figures)
        logger.log({"step": step, "epoch": run.epoch_of(step), **figures, "wall_s": run.wall_s()}, echo=False)
        callbacks.on_validate(step, result.val_accuracy)
    if config.tag:
        result.tag_file = register_run(config, run.spec, out, result.val_accuracy)
    logger.close()
    validated = "" if result.val_accuracy is None else f"; validation accuracy {result.val_accuracy:.2%}"
    print(f"Finished at step {step} ({result.stopped}): {out / FINAL_KERAS}, {out / FINAL_WEIGHTS}{validated}",
          flush=True)
    return result


def _resolve_steps(config: TrainConfig, records: RecordsInfo) -> tuple[TrainConfig, int | None]:
    """`epochs` turned into `steps` (needs the manifest's example count); returns the steps of one pass too."""
    steps_per_epoch = None
    if records.num_examples is not None:
        steps_per_epoch = max(1, records.num_examples // config.batch_size)
    if config.epochs is not None:
        if steps_per_epoch is None:
            raise RecordsError("epochs needs the example count of manifest.json beside the records; pass steps.")
        config = dataclasses.replace(config, steps=max(1, math.ceil(config.epochs * steps_per_epoch)), epochs=None)
    return config, steps_per_epoch


def train(config: TrainConfig, callbacks: Sequence[TrainCallback] = ()) -> TrainResult:
    """Trains a zoo backbone with a margin head on TFRecords, as `ksf train` does.

    The output folder `config.out` receives `config.toml` (the resolved config),
    `checkpoints/` (kept `keep_checkpoints` deep), `logs/` (TensorBoard: loss, accuracy, lambda,
    lr, images/s, val_accuracy), `metrics.csv` (the same figures), and at the end the embedding
    model without its head as `final.keras` and `final.weights.h5` (loadable as
    `Sphere20(weights="out/final.weights.h5")`). Running again with the same `out` resumes from
    the newest complete checkpoint and says so. SIGTERM/SIGINT save a checkpoint and return
    with `stopped="SIGTERM"`/`"SIGINT"`.

    Args:
        config: TrainConfig. See its fields; `tfrecords` and `steps` or `epochs` are required.
        callbacks: TrainCallback objects whose hooks (pass start, batches, step end, log,
            checkpoint, validate) the run calls.

    Returns:
        TrainResult.

    Raises:
        ValueError: a bad option, or unusable records (`RecordsError`), validation pair list
            (`validation.PairListError`) or `.bin` set (`validation.BinSetError`), all reported before the
            first step and before anything is written.
        NonFiniteLossError: the loss went non-finite with `on_nan="stop"`.
        keras_sphereface.utils.disk.WriteError: the disk is full or the folder read-only while writing
            a checkpoint or the final model; names the folder or file, and the newest complete
            checkpoint (kept) that the same command resumes from.
    """
    config = dataclasses.replace(config).validate()
    records = read_records_info(config.tfrecords)
    spec = get_model_spec(config.model)
    out = Path(config.out)
    seed = resolve_seed(config, out)
    pair_problems = []
    if config.validate_pairs is not None:
        _, pair_problems = validation.check_pair_list(config.validate_pairs, config.validate_data,
                                                      skip_missing=config.validate_skip_missing)
    bin_sets = validation.check_bin_files(config.validate_bin, inputs.input_size(config, spec))
    placement = make_placement(config.strategy)
    if config.batch_size % placement.num_replicas:
        raise ValueError(f"batch_size must be a multiple of the {placement.num_replicas} replicas. "
                         f"Received: batch_size={config.batch_size}")
    check_worker_shards(records, placement, config.batch_size)
    memory = check_run_head(config, spec, records.num_classes, placement.num_replicas)
    config, steps_per_epoch = _resolve_steps(config, records)
    config = dataclasses.replace(config, seed=seed)

    chief = placement.is_chief
    work_dir = out if chief else Path(tempfile.mkdtemp(prefix=f"ksf-worker{placement.worker_index}-"))
    run = _Run(config, spec, records, placement, out, work_dir, steps_per_epoch, bin_sets)
    hooks = CallbackList(callbacks)
    if config.deterministic:
        tf.config.experimental.enable_op_determinism()
    previous_policy = keras.mixed_precision.global_policy()
    keras.mixed_precision.set_global_policy(config.precision)
    keras.utils.set_random_seed(seed)
    logger = None
    try:
        state = build_state(config, spec, records, placement, seed, out / CHECKPOINT_DIR, work_dir / CHECKPOINT_DIR,
                            on_pass_start=hooks.on_pass_start)
        logger = TrainLogger(work_dir if chief else None, config.steps, int(state.global_step.numpy()),
                             show_bar=chief and config.progress and sys.stderr.isatty(),
                             extra_fields=[validation.bin_figure(p) for p in config.validate_bin])
        if chief:
            write_config(config, out)
        if pair_problems and chief:
            logger.message(f"Validation pairs: {len(pair_problems)} problem(s); the pairs they touch are left out: "
                           + "; ".join(pair_problems[:10]))
        if state.resumed_from is not None:
            logger.message(_resume_message(run, state))
        elif chief:
            logger.message(f"Training {spec.name} + {config.head} on {records.num_classes} classes "
                           f"({records.num_examples or '?'} images), {placement.kind} strategy with "
                           f"{placement.num_replicas} replica(s), {config.precision}, seed {seed}; "
                           f"output in {out}{_lambda_start_text(config, state)}")
        if chief:
            logger.message(f"{_rate_message(config)}\nAugmentation: {config.augmentation().describe()}\n"
                           f"Margin head: {memory.describe()}")
        result = _drive(run, state, logger, hooks)
        return _finish(run, state, logger, hooks, result)
    except tf.errors.InvalidArgumentError as error:
        text = str(error)
        if "num_classes" in text and "label" in text:
            detail = text.split("assertion failed:", 1)[-1].splitlines()[0].strip()
            raise RecordsError(f"Labels in {config.tfrecords} do not fit num_classes={records.num_classes} of "
                               f"labels.json: {detail}") from error
        raise
    finally:
        if logger is not None:
            logger.close()
        keras.mixed_precision.set_global_policy(previous_policy)
        if not chief:
            shutil.rmtree(work_dir, ignore_errors=True)
