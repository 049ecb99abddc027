"""`train(config)`: the custom training loop behind `ksf train`.

One global step = one global batch: a `tf.function` pulls one per-replica batch per local
replica from this worker's input pipeline, runs forward/backward under `strategy.run`
(gradients are summed across replicas by the optimizer), applies SGD with momentum and
advances `global_step`. Heads compute in float32 under any precision policy; the A-Softmax
head's `iteration` variable advances once per global step.

State that a checkpoint holds (`tf.train.Checkpoint`, managed by `tf.train.CheckpointManager`
in `<out>/checkpoints`): the training model (backbone, head and the head's `iteration`), the
optimizer (momentum slots, its iteration count, the learning-rate variable and, under loss
scaling, the scale and its counter), `global_step`, and, when the run has one worker, the
input position: the pass over the records (`data_epoch`; each pass is a `tf.data` pipeline
seeded by `epoch_seed`) and its iterator (file order, shuffle buffer, augmentation seeds). With
several workers each worker writes its own input position beside it (`_WorkerInputs`). A run started again with
the same `out` restores the newest complete checkpoint and continues exactly where it
stopped: a resumed run ends with the weights of an uninterrupted one (under
`deterministic=True`).
"""

from __future__ import annotations

import contextlib
import csv
import dataclasses
import json
import math
import os
import random
import shutil
import signal
import sys
import tempfile
import threading
import time
from pathlib import Path

import keras
import numpy as np
import tensorflow as tf
from tensorflow.core.framework import summary_pb2

from keras_sphereface.data.dataset import read_num_classes, tfrecord_dataset
from keras_sphereface.models import build_training_model
from keras_sphereface.models.zoo import get_model_spec
from keras_sphereface.training import validation
from keras_sphereface.training.config import TrainConfig, config_to_toml
from keras_sphereface.training.distribute import Placement, make_placement
from keras_sphereface.training.heads import learning_rate_at, make_head
from keras_sphereface.utils.atomic import atomic_path, atomic_write
from keras_sphereface.utils.disk import WriteError, as_write_error, clear_write_errors
from keras_sphereface.version import __version__

CHECKPOINT_DIR = "checkpoints"
# Keys of `global_step` and of the input pass (`data_epoch`) in a checkpoint (one worker's, or one input file).
_STEP_KEY = "global_step/.ATTRIBUTES/VARIABLE_VALUE"
_EPOCH_KEY = "data_epoch/.ATTRIBUTES/VARIABLE_VALUE"
LOG_DIR = "logs"
METRICS_CSV = "metrics.csv"
CONFIG_TOML = "config.toml"
FINAL_KERAS = "final.keras"
FINAL_WEIGHTS = "final.weights.h5"
METRIC_FIELDS = ("step", "epoch", "loss", "accuracy", "lambda", "lr", "images_per_s", "val_accuracy",
                 "wall_s")
_DECAYED_NAMES = ("kernel", "depthwise_kernel", "pointwise_kernel")


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


class RecordsError(ValueError):
    """The training records cannot be used (no match, no labels.json, labels out of range)."""


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
        val_accuracy: float or None. The last validation accuracy.
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


@dataclasses.dataclass(frozen=True)
class RecordsInfo:
    """The training shards of a pattern and what `ksf make-tfrecords` wrote beside them."""

    files: tuple[str, ...]
    num_classes: int
    num_examples: int | None


def read_records_info(pattern: str) -> RecordsInfo:
    """Finds the shards of `pattern` and reads `labels.json` (and `manifest.json`) beside them.

    Returns:
        RecordsInfo with the number of classes and, when the manifest lists the shards, the
        number of examples in them.

    Raises:
        RecordsError: no shard matches, or no `labels.json` in the shards' folder.
    """
    files = tuple(sorted(tf.io.gfile.glob(pattern)))
    if not files:
        raise RecordsError(f"No TFRecord file matches the pattern. Received: tfrecords={pattern!r}")
    folder = Path(files[0]).parent
    num_classes = read_num_classes(list(files))
    if num_classes is None:
        raise RecordsError(f"No labels.json beside the records in {folder} (ksf make-tfrecords writes it); "
                           f"it gives the number of classes. Received: tfrecords={pattern!r}")
    num_examples = None
    manifest_file = folder / "manifest.json"
    if manifest_file.is_file():
        manifest = json.loads(manifest_file.read_text(encoding="utf-8"))
        counts = {shard["file"]: shard["num_examples"] for split in manifest.get("splits", {}).values()
                  for shard in split.get("shards", [])}
        names = [Path(f).name for f in files]
        if all(name in counts for name in names):
            num_examples = sum(counts[name] for name in names)
    return RecordsInfo(files, num_classes, num_examples)


def _set_precision(precision: str) -> None:
    keras.mixed_precision.set_global_policy(precision)


def _checkpoint_is_complete(path: str) -> bool:
    return Path(path + ".index").is_file() and bool(tf.io.gfile.glob(path + ".data-*"))


def latest_complete_checkpoint(directory: str | os.PathLike) -> str | None:
    """The newest checkpoint in `directory` whose files are all on disk, or None.

    `tf.train.CheckpointManager` writes data files, then the index, then its state file, so a
    checkpoint interrupted while being written is not listed; a listed one whose index or data
    went missing is passed over for the one before it.
    """
    state = tf.train.get_checkpoint_state(os.fspath(directory))
    if state is None:
        return None
    candidates = [*state.all_model_checkpoint_paths]
    if state.model_checkpoint_path and state.model_checkpoint_path not in candidates:
        candidates.append(state.model_checkpoint_path)
    for path in reversed(candidates):
        full = path if os.path.isabs(path) else os.path.join(os.fspath(directory), path)
        if _checkpoint_is_complete(full):
            return full
    return None


def write_scalar(tag: str, value: float) -> None:
    """Writes a TensorBoard scalar with TensorFlow's core summary op (no `tensorboard` package needed).

    Uses the default summary writer and step (`writer.as_default(step=...)`); the metadata names
    the `scalars` plugin, as `tf.summary.scalar` (from the tensorboard package) does.
    """
    metadata = summary_pb2.SummaryMetadata()
    metadata.plugin_data.plugin_name = "scalars"
    tf.summary.write(tag, tf.constant(value, tf.float32), metadata=metadata)


class _Signals:
    """Turns SIGTERM/SIGINT into a flag the loop checks after each step (main thread only)."""

    def __init__(self):
        self.received: str | None = None
        self._previous = {}

    def __enter__(self):
        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGTERM, signal.SIGINT):
                self._previous[sig] = signal.signal(sig, self._handle)
        return self

    def _handle(self, signum, _frame):
        if self.received is not None and signum == signal.SIGINT:
            raise KeyboardInterrupt  # a second Ctrl-C stops at once
        self.received = signal.Signals(signum).name

    def __exit__(self, *exc):
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)
        return False


class _Logger:
    """Figures every `log_every` steps: TensorBoard scalars, `metrics.csv` and a progress display."""

    def __init__(self, out: Path | None, total_steps: int, start_step: int, show_bar: bool):
        self.out = out
        self.writer = tf.summary.create_file_writer(str(out / LOG_DIR)) if out is not None else None
        self.csv_path = out / METRICS_CSV if out is not None else None
        if self.csv_path is not None:
            self._truncate_csv(start_step)
        self.progress = None
        self.task = None
        if show_bar:
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

            self.progress = Progress(TextColumn("[bold]train"), BarColumn(), MofNCompleteColumn(),
                                     TimeRemainingColumn(), TextColumn("{task.fields[figures]}"))
            self.task = self.progress.add_task("train", total=total_steps, completed=start_step, figures="")
            self.progress.start()

    def _truncate_csv(self, start_step: int) -> None:
        """Drops rows after the resumed step (they belong to work the checkpoint does not hold)."""
        rows = []
        if self.csv_path.is_file():
            with open(self.csv_path, newline="", encoding="utf-8") as handle:
                rows = [r for r in csv.DictReader(handle) if int(r["step"]) <= start_step]
        with atomic_write(self.csv_path) as handle:
            writer = csv.DictWriter(handle, METRIC_FIELDS)
            writer.writeheader()
            writer.writerows(rows)

    def log(self, row: dict) -> None:
        """Writes one row (`METRIC_FIELDS`; missing figures are left empty)."""
        if self.writer is not None:
            with self.writer.as_default(step=int(row["step"])):
                for key in ("loss", "accuracy", "lambda", "lr", "images_per_s", "val_accuracy"):
                    value = row.get(key)
                    if value is not None and value == value:
                        write_scalar(key, float(value))
            self.writer.flush()
        if self.csv_path is not None:
            with open(self.csv_path, "a", newline="", encoding="utf-8") as handle:
                csv.DictWriter(handle, METRIC_FIELDS).writerow({k: row.get(k, "") for k in METRIC_FIELDS})
        text = _figures_text(row)
        if self.progress is not None:
            self.progress.update(self.task, completed=int(row["step"]), figures=text)
        elif self.out is not None:
            print(f"step {int(row['step'])}  {text}", flush=True)

    def message(self, text: str) -> None:
        """Prints a line (above the bar when there is one)."""
        if self.progress is not None:
            self.progress.console.print(text)
        else:
            print(text, flush=True)

    def close(self) -> None:
        if self.progress is not None:
            self.progress.stop()
        if self.writer is not None:
            self.writer.close()


def _figures_text(row: dict) -> str:
    parts = [f"epoch {row['epoch']:.2f}"]
    for key, fmt in (("loss", "{:.4f}"), ("accuracy", "{:.3f}"), ("lambda", "{:.3g}"), ("lr", "{:.3g}"),
                     ("images_per_s", "{:.0f} img/s"), ("val_accuracy", "val {:.2%}")):
        value = row.get(key)
        if value is not None and value == value:
            parts.append(f"{key if key not in ('images_per_s', 'val_accuracy') else ''} {fmt.format(value)}".strip())
    return "  ".join(parts)


def _resolve_seed(config: TrainConfig, out: Path) -> int:
    if config.seed is not None:
        return int(config.seed)
    previous = out / CONFIG_TOML
    if config.resume and previous.is_file():
        import tomllib

        seed = tomllib.loads(previous.read_text(encoding="utf-8")).get("seed")
        if seed is not None:
            return int(seed)
    return random.SystemRandom().randrange(2**31)


def _input_size(config: TrainConfig, spec) -> tuple[int, int]:
    return tuple(config.input_size) if config.input_size is not None else tuple(spec.input_size)


def build_backbone(config: TrainConfig, weights=None) -> keras.Model:
    """The embedding model of `config` (zoo `model`, `input_size`, `embedding_dim`), float32 unless a policy is set.

    Args:
        config: TrainConfig.
        weights: None, a tag or a `.weights.h5` path (`config.weights` for training).

    Returns:
        keras.Model `(batch_size, height, width, 3) -> (batch_size, embedding_dim)`.
    """
    spec = get_model_spec(config.model)
    options = {"input_shape": (*_input_size(config, spec), 3)}
    if config.embedding_dim is not None:
        options["embedding_dim"] = int(config.embedding_dim)
    return spec.build(weights=weights, **options)


def export_backbone(config: TrainConfig, backbone: keras.Model) -> keras.Model:
    """A float32 copy of a (possibly mixed-precision, distributed) backbone, outside any strategy."""
    previous = keras.mixed_precision.global_policy()
    keras.mixed_precision.set_global_policy("float32")
    try:
        clone = build_backbone(config)
        clone.set_weights([np.asarray(w) for w in backbone.get_weights()])
    finally:
        keras.mixed_precision.set_global_policy(previous)
    return clone


def _classify_variables(model: keras.Model, decay_on: str):
    decayed, bias = [], []
    for variable in model.trainable_variables:
        name = variable.name.split("/")[-1].split(":")[0]
        if decay_on == "all" or name in _DECAYED_NAMES:
            decayed.append(variable)
        bias.append(name == "bias")
    return decayed, bias


def _check_worker_shards(records: RecordsInfo, placement: Placement, batch_size: int) -> None:
    """Refuses, on every worker alike, records where some worker's shards give no full batch.

    Each worker reads every `num_workers`-th file (`tf.data` file sharding). A worker whose files
    hold fewer examples than its replicas' share of one global batch would fail at its first
    step while the others wait for it in a collective; the example counts of `manifest.json`
    let every worker see this before training (without a manifest nothing is checked here).
    """
    if placement.num_workers < 2:
        return
    manifest_file = Path(records.files[0]).parent / "manifest.json"
    if not manifest_file.is_file():
        return
    manifest = json.loads(manifest_file.read_text(encoding="utf-8"))
    counts = {shard.get("file"): shard.get("num_examples") for split in manifest.get("splits", {}).values()
              for shard in split.get("shards", [])}
    need = batch_size // placement.num_replicas * placement.local_replicas
    for worker in range(placement.num_workers):
        names = [Path(f).name for f in records.files[worker::placement.num_workers]]
        if not all(isinstance(counts.get(name), int) for name in names):
            return
        held = sum(counts[name] for name in names)
        if held < need:
            raise RecordsError(
                f"With {placement.num_workers} workers, worker {worker} reads {len(names)} of the "
                f"{len(records.files)} TFRecord files ({', '.join(names) or 'none'}) holding {held} examples, "
                f"fewer than its share of one global batch ({need} of batch_size={batch_size}): it would have "
                f"no full batch to train on while the other workers wait for it. Write more, evenly filled "
                f"shards (ksf make-tfrecords deals examples round-robin) or lower batch_size.")


def _make_dataset(config: TrainConfig, spec, records: RecordsInfo, placement: Placement, seed: int):
    """This worker's input: per-replica batches, preprocessed for the model.

    The pipeline's record check refuses a label outside `[0, num_classes)`, naming file and record.
    """
    context = None
    if placement.num_replicas > 1:
        context = tf.distribute.InputContext(num_input_pipelines=placement.num_workers,
                                             input_pipeline_id=placement.worker_index,
                                             num_replicas_in_sync=placement.num_replicas)
    dataset = tfrecord_dataset(list(records.files), config.batch_size, training=True,
                               image_size=_input_size(config, spec), align=config.align, template=config.template,
                               flip=config.flip, normalization=None, shuffle_buffer=config.shuffle_buffer,
                               seed=seed, input_context=context, num_classes=records.num_classes)
    preprocess = spec.preprocess_input
    return dataset.map(lambda images, labels: (preprocess(images), labels), num_parallel_calls=tf.data.AUTOTUNE,
                       deterministic=True)


def epoch_seed(seed: int, epoch: int) -> int:
    """The input seed of one pass over the records: a new order and new flips in every epoch."""
    return (int(seed) + 1_000_003 * int(epoch)) % (2**31 - 1)


class _Input:
    """This worker's batches, one `tf.data` pass per epoch, each seeded by `epoch_seed`.

    Each epoch is its own dataset (not `.repeat()`), so a restored iterator never depends on
    random-generator state shared across epochs: the checkpoint holds the epoch number
    (`epoch`) and the position inside it (the iterator: file order, shuffle buffer, seeds).
    """

    def __init__(self, make_dataset, seed: int, local_replicas: int):
        self.make_dataset, self.seed, self.local = make_dataset, seed, local_replicas
        self.epoch = tf.Variable(0, dtype=tf.int64, trainable=False, name="data_epoch")
        self.checkpoint: tf.train.Checkpoint | None = None  # the one that tracks `input` (the iterator)
        self.iterator = None

    def start(self, epoch: int) -> None:
        """Opens the iterator of pass `epoch` (and puts it in the checkpoint)."""
        self.epoch.assign(epoch)
        self.iterator = iter(self.make_dataset(epoch_seed(self.seed, epoch)))
        if self.checkpoint is not None:
            self.checkpoint.input = self.iterator

    def next_batches(self) -> list:
        """One per-replica batch per local replica; a pass that runs out starts the next one."""
        for attempt in range(2):
            try:
                return [next(self.iterator) for _ in range(self.local)]
            except StopIteration:
                if attempt:
                    break
                self.start(int(self.epoch.numpy()) + 1)
        raise RecordsError("The training records give no full batch in a pass; lower batch_size.")


class _WorkerInputs:
    """A multi-worker run's input position: each worker's own `tf.data` iterator beside the checkpoints.

    Each worker reads its own files, so its iterator and pass are its own and not in the chief's
    checkpoint. At every checkpoint step each worker writes them to
    `<out>/checkpoints/inputs/workers-<W>/worker-<i>/input-<step>` (on the file system that all
    workers already restore the chief's checkpoints from); a resumed run restores the one of the
    restored step. `W`, the number of workers, is in the path because the files a worker reads
    depend on it: a run resumed with another cluster size starts fresh passes instead.
    """

    def __init__(self, inputs: _Input, checkpoint_dir: Path, placement: Placement, keep: int):
        self.inputs, self.keep = inputs, keep
        workers, index = placement.num_workers, placement.worker_index
        self.folder = checkpoint_dir / "inputs" / f"workers-{workers}" / f"worker-{index}"
        self.checkpoint: tf.train.Checkpoint | None = None

    def path(self, step: int) -> str:
        return str(self.folder / f"input-{step}")

    def find(self, step: int) -> str | None:
        """The complete input checkpoint of `step` (its index is written last), or None."""
        path = self.path(step)
        return path if _checkpoint_is_complete(path) else None

    def track(self) -> None:
        """Starts tracking the current iterator (after `inputs.start`)."""
        self.checkpoint = tf.train.Checkpoint(data_epoch=self.inputs.epoch, input=self.inputs.iterator)
        self.inputs.checkpoint = self.checkpoint

    def restore(self, path: str) -> None:
        """Restores pass and iterator from `path`; every value in it must find its object."""
        self.checkpoint.restore(path).assert_nontrivial_match()  # (write() keeps no save_counter)

    def save(self, step: int) -> None:
        """Writes this worker's position at `step` and keeps the newest `keep` of them."""
        self.folder.mkdir(parents=True, exist_ok=True)
        self.checkpoint.write(self.path(step))
        steps = sorted(int(p.name[len("input-"):-len(".index")]) for p in self.folder.glob("input-*.index"))
        for old in steps[:-self.keep]:
            for leftover in self.folder.glob(f"input-{old}.*"):
                with contextlib.suppress(OSError):
                    leftover.unlink()


def train(config: TrainConfig) -> TrainResult:
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

    Returns:
        TrainResult.

    Raises:
        ValueError: a bad option, or unusable records (`RecordsError`) or validation pair list
            (`validation.PairListError`), all reported before the first step.
        NonFiniteLossError: the loss went non-finite with `on_nan="stop"`.
        keras_sphereface.utils.disk.WriteError: the disk is full or the folder read-only while writing
            a checkpoint or the final model; names the folder or file, and the newest complete
            checkpoint (kept) that the same command resumes from.
    """
    config = dataclasses.replace(config).validate()
    records = read_records_info(config.tfrecords)
    spec = get_model_spec(config.model)
    out = Path(config.out)
    seed = _resolve_seed(config, out)
    pair_problems = []
    if config.validate_pairs is not None:
        _, pair_problems = validation.check_pair_list(config.validate_pairs, config.validate_data,
                                                      skip_missing=config.validate_skip_missing)

    placement = make_placement(config.strategy)
    if config.batch_size % placement.num_replicas:
        raise ValueError(f"batch_size must be a multiple of the {placement.num_replicas} replicas. "
                         f"Received: batch_size={config.batch_size}")
    _check_worker_shards(records, placement, config.batch_size)
    steps_per_epoch = None
    if records.num_examples is not None:
        steps_per_epoch = max(1, records.num_examples // config.batch_size)
    if config.epochs is not None:
        if steps_per_epoch is None:
            raise RecordsError("epochs needs the example count of manifest.json beside the records; pass steps.")
        config = dataclasses.replace(config, steps=max(1, math.ceil(config.epochs * steps_per_epoch)), epochs=None)
    config = dataclasses.replace(config, seed=seed)
    total_steps = int(config.steps)

    chief = placement.is_chief
    work_dir = out if chief else Path(tempfile.mkdtemp(prefix=f"ksf-worker{placement.worker_index}-"))
    checkpoint_dir = out / CHECKPOINT_DIR  # where every worker restores from
    save_dir = work_dir / CHECKPOINT_DIR  # where this worker writes (a temporary folder if not chief)

    if config.deterministic:
        tf.config.experimental.enable_op_determinism()
    previous_policy = keras.mixed_precision.global_policy()
    _set_precision(config.precision)
    keras.utils.set_random_seed(seed)
    strategy = placement.strategy
    try:
        with strategy.scope():
            backbone = build_backbone(config, weights=config.weights)
            head = make_head(config.head, records.num_classes, config.head_options)
            model = build_training_model(backbone, head, name=f"{spec.name}_{config.head}")
            optimizer = keras.optimizers.SGD(learning_rate=config.lr, momentum=config.momentum,
                                             nesterov=config.nesterov)
            if config.precision == "mixed_float16" or config.on_nan == "skip":
                # In float32 a scale of 1 (and its powers of two) leaves every figure unchanged;
                # loss scaling is used there for its finite check, which skips the update.
                optimizer = keras.optimizers.LossScaleOptimizer(
                    optimizer, initial_scale=2.0**15 if config.precision == "mixed_float16" else 1.0)
            optimizer.build(model.trainable_variables)
            global_step = tf.Variable(0, dtype=tf.int64, trainable=False, name="global_step")
        single_worker = placement.num_workers == 1
        inputs = _Input(lambda input_seed: _make_dataset(config, spec, records, placement, input_seed), seed,
                        placement.local_replicas)
        worker_inputs = None if single_worker else _WorkerInputs(inputs, checkpoint_dir, placement,
                                                                 config.keep_checkpoints)
        latest = latest_complete_checkpoint(checkpoint_dir) if config.resume else None
        start_epoch, input_file, input_note = 0, None, ""
        if latest is not None:
            reader = tf.train.load_checkpoint(latest)
            latest_step = int(reader.get_tensor(_STEP_KEY))
            if single_worker:  # continue the pass the checkpoint was in
                if reader.has_tensor(_EPOCH_KEY):
                    start_epoch = int(reader.get_tensor(_EPOCH_KEY))
            else:
                input_file = worker_inputs.find(latest_step)
                if input_file is not None:
                    start_epoch = int(tf.train.load_checkpoint(input_file).get_tensor(_EPOCH_KEY))
                else:  # written by another cluster size, or lost: a pass of its own, seeded by the step
                    start_epoch = latest_step
                    input_note = (f"; worker {placement.worker_index} has no input position of step {latest_step} "
                                  f"for {placement.num_workers} workers, so it starts a new pass over its files")
        inputs.start(start_epoch)
        trackables = {"model": model, "optimizer": optimizer, "global_step": global_step}
        if single_worker:
            trackables.update(data_epoch=inputs.epoch, input=inputs.iterator)
        checkpoint = tf.train.Checkpoint(**trackables)
        if single_worker:
            inputs.checkpoint = checkpoint
        else:
            worker_inputs.track()
        manager = tf.train.CheckpointManager(checkpoint, str(save_dir), max_to_keep=config.keep_checkpoints,
                                             step_counter=global_step, checkpoint_name="ckpt")

        resumed_from = None
        if latest is not None:
            checkpoint.restore(latest).assert_existing_objects_matched()
            if input_file is not None:
                worker_inputs.restore(input_file)
            resumed_from = int(global_step.numpy())
        elif chief and (checkpoint_dir.is_dir() and any(checkpoint_dir.iterdir())) and not config.resume:
            shutil.rmtree(checkpoint_dir)

        step_fn = _make_train_step(config, model, optimizer, global_step, inputs, placement)
        logger = _Logger(work_dir if chief else None, total_steps, int(global_step.numpy()),
                         show_bar=chief and config.progress and sys.stderr.isatty())
        if chief:
            out.mkdir(parents=True, exist_ok=True)
            header = (f"Resolved training config written by keras_sphereface {__version__}.\n"
                      f"Reproduce: ksf train --tfrecords '{config.tfrecords}' --recipe {out / CONFIG_TOML} --out {out}")
            with atomic_write(out / CONFIG_TOML) as handle:
                handle.write(config_to_toml(config, header))
        if pair_problems and chief:
            logger.message(f"Validation pairs: {len(pair_problems)} problem(s); the pairs they touch are left out: "
                           + "; ".join(pair_problems[:10]))
        if resumed_from is not None:
            logger.message(_resume_message(latest, resumed_from, steps_per_epoch, head) + input_note)
        elif chief:
            logger.message(f"Training {spec.name} + {config.head} on {records.num_classes} classes "
                           f"({records.num_examples or '?'} images), {placement.kind} strategy with "
                           f"{placement.num_replicas} replica(s), {config.precision}, seed {seed}; "
                           f"output in {out}")
        return _run(config, spec, placement, model, backbone, head, optimizer, global_step, step_fn, manager,
                    logger, resumed_from, steps_per_epoch, total_steps, out, work_dir, worker_inputs)
    except tf.errors.InvalidArgumentError as error:
        text = str(error)
        if "num_classes" in text and "label" in text:
            detail = text.split("assertion failed:", 1)[-1].splitlines()[0].strip()
            raise RecordsError(f"Labels in {config.tfrecords} do not fit num_classes={records.num_classes} of "
                               f"labels.json: {detail}") from error
        raise
    finally:
        keras.mixed_precision.set_global_policy(previous_policy)
        if not chief:
            shutil.rmtree(work_dir, ignore_errors=True)


def _resume_message(path: str, step: int, steps_per_epoch: int | None, head) -> str:
    epoch = f", epoch {step / steps_per_epoch:.2f}" if steps_per_epoch else ""
    lam = ""
    if hasattr(head, "lambda_at"):
        lam = f", lambda {float(head.lambda_at(int(np.asarray(head.iteration)))):.4g}"
    return f"Resuming from {path}: step {step}{epoch}{lam}"


def _make_train_step(config, model, optimizer, global_step, inputs: _Input, placement: Placement):
    strategy = placement.strategy
    decayed, is_bias = _classify_variables(model, config.weight_decay_on)
    trainable = model.trainable_variables
    weight_decay = float(config.weight_decay)
    bias_mult = float(config.bias_lr_mult)
    global_batch = float(config.batch_size)
    local = placement.local_replicas
    first_replica = placement.worker_index * local

    def compute_gradients(images, labels):
        with tf.GradientTape() as tape:
            logits = model([images, labels], training=True)
            logits = tf.cast(logits, tf.float32)
            per_example = tf.nn.sparse_softmax_cross_entropy_with_logits(labels=labels, logits=logits)
            cross_entropy = tf.reduce_sum(per_example) / global_batch
            loss = cross_entropy
            if weight_decay and decayed:
                # Caffe/PyTorch weight decay `wd * w` in the gradient = `wd / 2 * |w|^2` in the loss.
                penalty = tf.add_n([tf.reduce_sum(tf.square(tf.cast(v, tf.float32))) for v in decayed])
                loss += 0.5 * weight_decay * penalty / strategy.num_replicas_in_sync
            if model.losses:
                loss += tf.add_n(model.losses) / strategy.num_replicas_in_sync
            scaled = optimizer.scale_loss(loss)
        grads = tape.gradient(scaled, trainable)
        if bias_mult != 1.0:
            grads = [g * bias_mult if bias else g for g, bias in zip(grads, is_bias, strict=True)]
        correct = tf.reduce_sum(tf.cast(tf.equal(tf.argmax(logits, -1, output_type=tf.int32), labels), tf.float32))
        return grads, cross_entropy, correct

    if config.jit_compile:
        # XLA compiles forward and backward into one program; the update stays outside it, where
        # the optimizer sums gradients across replicas.
        compute_gradients = tf.function(compute_gradients, jit_compile=True)

    def replica_step(batch):
        grads, cross_entropy, correct = compute_gradients(*batch)
        optimizer.apply_gradients(zip(grads, trainable, strict=True))
        return cross_entropy, correct

    @tf.function
    def distributed_step(learning_rate, batches):
        optimizer.learning_rate.assign(learning_rate)
        values = strategy.experimental_distribute_values_from_function(
            lambda context: batches[context.replica_id_in_sync_group - first_replica])
        cross_entropy, correct = strategy.run(replica_step, args=(values,))
        global_step.assign_add(1)
        return (strategy.reduce(tf.distribute.ReduceOp.SUM, cross_entropy, axis=None),
                strategy.reduce(tf.distribute.ReduceOp.SUM, correct, axis=None))

    def train_step(learning_rate):
        return distributed_step(learning_rate, inputs.next_batches())

    return train_step


def _run(config, spec, placement, model, backbone, head, optimizer, global_step, train_step, manager, logger,
         resumed_from, steps_per_epoch, total_steps, out, work_dir, worker_inputs=None) -> TrainResult:
    chief = placement.is_chief
    step = int(global_step.numpy())
    started = time.perf_counter()
    interval_start, interval_steps, loss_sum, correct_sum = time.perf_counter(), 0, 0.0, 0.0
    last = {"loss": float("nan"), "accuracy": float("nan")}
    val_accuracy, skipped, stopped = None, [], "completed"
    scale_before = _loss_scale(optimizer)

    def epoch_of(s):
        return s / steps_per_epoch if steps_per_epoch else 0.0

    def current_lambda():
        if hasattr(head, "lambda_at") and getattr(head, "m", 1) > 1:
            return float(head.lambda_at(int(np.asarray(head.iteration))))
        return None

    def save() -> str | None:
        number = int(global_step.numpy())
        latest = manager.latest_checkpoint
        if number == resumed_from and latest and latest.endswith(f"-{number}") and _checkpoint_is_complete(latest):
            # Nothing ran since this checkpoint was restored: keep it rather than rewrite it in place.
            return latest if chief else None
        try:
            path = manager.save(checkpoint_number=number)
        except Exception as error:
            _remove_partial_checkpoint(manager, number)
            clear = as_write_error(error, manager.directory)
            if clear is None:
                raise
            raise clear.with_hint(_kept_checkpoint_hint(manager.directory, number)) from error
        if worker_inputs is not None:
            with clear_write_errors(worker_inputs.folder):
                worker_inputs.save(number)
        if not chief:
            return None
        return path

    def run_validation(s):
        clone = export_backbone(config, backbone)
        accuracy = validation.validate(clone, config.validate_pairs, config.validate_data,
                                       preprocess=spec.preprocessing,
                                       skip_missing=config.validate_skip_missing)
        logger.log({"step": s, "epoch": epoch_of(s), "val_accuracy": accuracy,
                    "wall_s": round(time.perf_counter() - started, 1)})
        return accuracy

    with _Signals() as signals:
        try:
            while step < total_steps:
                learning_rate = learning_rate_at(step, config)
                cross_entropy, correct = train_step(tf.constant(learning_rate, tf.float32))
                step += 1
                loss_value = float(cross_entropy)
                if not math.isfinite(loss_value):
                    if config.on_nan == "stop":
                        raise NonFiniteLossError(step, loss_value, manager.latest_checkpoint if chief else None)
                    skipped.append(step)
                    scale_before = _loss_scale(optimizer)
                    logger.message(f"step {step}: non-finite loss ({loss_value}); update skipped")
                else:
                    scale_now = _loss_scale(optimizer)
                    if config.precision != "mixed_float16" and scale_now is not None and scale_before is not None \
                            and scale_now < scale_before:
                        skipped.append(step)
                        logger.message(f"step {step}: non-finite gradients; update skipped")
                    scale_before = scale_now
                    loss_sum += loss_value
                    correct_sum += float(correct)
                    interval_steps += 1
                if step % config.log_every == 0 or step == total_steps:
                    seconds = max(time.perf_counter() - interval_start, 1e-9)
                    n = max(interval_steps, 1)
                    last = {"loss": loss_sum / n if interval_steps else float("nan"),
                            "accuracy": correct_sum / (n * config.batch_size) if interval_steps else float("nan")}
                    if chief:
                        logger.log({"step": step, "epoch": epoch_of(step), **last, "lambda": current_lambda(),
                                    "lr": learning_rate,
                                    "images_per_s": interval_steps * config.batch_size / seconds,
                                    "wall_s": round(time.perf_counter() - started, 1)})
                    interval_start, interval_steps, loss_sum, correct_sum = time.perf_counter(), 0, 0.0, 0.0
                pause = time.perf_counter()
                if step % config.checkpoint_every == 0 and step < total_steps:
                    save()
                if config.validate_pairs and chief and step % config.validate_every == 0 and step < total_steps:
                    val_accuracy = run_validation(step)
                interval_start += time.perf_counter() - pause  # images/s counts training time only
                if signals.received:
                    stopped = signals.received
                    break
                if config.time_limit_minutes is not None and \
                        time.perf_counter() - started >= 60.0 * config.time_limit_minutes:
                    stopped = "time limit"
                    break
            checkpoint_path = save()
        finally:
            logger.close()

    result = TrainResult(out=out, step=step, epoch=epoch_of(step), loss=last["loss"], accuracy=last["accuracy"],
                         current_lambda=current_lambda(), val_accuracy=val_accuracy, resumed_from=resumed_from,
                         stopped=stopped, skipped_steps=skipped, final_keras=None, final_weights=None,
                         checkpoint=checkpoint_path)
    if stopped in ("SIGTERM", "SIGINT"):
        if chief:
            print(f"{stopped} received: checkpoint saved at step {step} ({checkpoint_path}). Resume by running "
                  f"the same command again (same --out {out}).", flush=True)
        return result
    final = export_backbone(config, backbone)
    result.model = final
    if chief:
        for name in (FINAL_KERAS, FINAL_WEIGHTS):  # temporaries of a run killed while writing them
            for leftover in out.glob(f".{name}.tmp-*"):
                with contextlib.suppress(OSError):
                    leftover.unlink()
        try:
            with atomic_path(out / FINAL_KERAS) as tmp:
                final.save(tmp)
            with atomic_path(out / FINAL_WEIGHTS) as tmp:
                final.save_weights(tmp)
        except WriteError as error:
            raise error.with_hint(f"The checkpoint of step {step} is kept ({checkpoint_path}); free space (or make "
                                  f"the folder writable) and run the same command again to write the final "
                                  f"model from it.") from error
        result.final_keras, result.final_weights = out / FINAL_KERAS, out / FINAL_WEIGHTS
        if config.validate_pairs:
            result.val_accuracy = validation.validate(final, config.validate_pairs, config.validate_data,
                                                      preprocess=spec.preprocessing,
                                       skip_missing=config.validate_skip_missing)
            logger_row = {"step": step, "epoch": epoch_of(step), "val_accuracy": result.val_accuracy,
                          "wall_s": round(time.perf_counter() - started, 1)}
            _append_csv(work_dir / METRICS_CSV, logger_row)
            _summary(work_dir, logger_row)
        if config.tag:
            result.tag_file = _register(config, spec, out, result)
        print(f"Finished at step {step} ({stopped}): {out / FINAL_KERAS}, {out / FINAL_WEIGHTS}"
              + (f"; validation accuracy {result.val_accuracy:.2%}" if result.val_accuracy is not None else ""),
              flush=True)
    return result


def _remove_partial_checkpoint(manager: tf.train.CheckpointManager, number: int) -> None:
    """Removes what a failed save of checkpoint `number` left, to give the space back.

    That is TF's `ckpt-N_temp/` and `*.tempstate*` files, and `ckpt-N.index` / `ckpt-N.data-*`
    unless the manager's state lists `ckpt-N` (a listed checkpoint is never touched).
    """
    prefix = os.path.join(manager.directory, f"ckpt-{number}")
    patterns = [f"{prefix}_temp", f"{prefix}.*tempstate*"]
    if prefix not in manager.checkpoints:
        patterns += [f"{prefix}.index", f"{prefix}.data-*"]
    for pattern in patterns:
        for leftover in tf.io.gfile.glob(pattern):
            if os.path.isdir(leftover):
                shutil.rmtree(leftover, ignore_errors=True)
            else:
                with contextlib.suppress(OSError):
                    os.remove(leftover)


def _kept_checkpoint_hint(directory: str, number: int) -> str:
    """What a failed checkpoint write leaves: the newest complete checkpoint, and how to resume from it."""
    kept = latest_complete_checkpoint(directory)
    if kept is None:
        return (f"Checkpoint {number} was not saved and no earlier one exists; free space (or make the folder "
                f"writable) and run the same command again (it starts over).")
    step = int(tf.train.load_checkpoint(kept).get_tensor(_STEP_KEY))
    return (f"Checkpoint {number} was not saved; the earlier checkpoints are kept and complete (newest: {kept}, "
            f"step {step}). Free space (or make the folder writable) and run the same command again to resume "
            f"from step {step}.")


def _loss_scale(optimizer) -> float | None:
    scale = getattr(optimizer, "dynamic_scale", None)
    return None if scale is None else float(np.asarray(scale))


def _append_csv(path: Path, row: dict) -> None:
    with open(path, "a", newline="", encoding="utf-8") as handle:
        csv.DictWriter(handle, METRIC_FIELDS).writerow({k: row.get(k, "") for k in METRIC_FIELDS})


def _summary(work_dir: Path, row: dict) -> None:
    writer = tf.summary.create_file_writer(str(work_dir / LOG_DIR))
    with writer.as_default(step=int(row["step"])):
        write_scalar("val_accuracy", float(row["val_accuracy"]))
    writer.close()


def _register(config: TrainConfig, spec, out: Path, result: TrainResult) -> Path:
    from keras_sphereface.models import register_weights

    return register_weights(
        spec.name, config.tag, out / FINAL_WEIGHTS,
        input_size=_input_size(config, spec), embedding_dim=config.embedding_dim,
        description=config.description or f"{spec.builder_name} trained with {config.head} by ksf train",
        training_data=config.tfrecords, loss=f"{config.head} {config.head_options}",
        lfw_accuracy=result.val_accuracy, command=f"ksf train --recipe {out / CONFIG_TOML}",
    )
