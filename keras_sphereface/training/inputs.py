"""A worker's training input: one seeded `tf.data` pass per epoch, and the records it reads.

`read_records_info` finds the shards and what `ksf make-tfrecords` wrote beside them (through
`keras_sphereface.data.manifest`, the one reader of those files); `check_worker_shards` refuses a
cluster in which some worker would get no full batch; `make_dataset` builds one worker's pipeline;
`EpochInput` serves its batches, pass after pass.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable

import tensorflow as tf

from keras_sphereface.data.dataset import tfrecord_dataset
from keras_sphereface.data.manifest import count_examples, read_num_classes, shard_entries
from keras_sphereface.models.zoo import ModelSpec
from keras_sphereface.training.config import TrainConfig
from keras_sphereface.training.distribute import Placement


class RecordsError(ValueError):
    """The training records cannot be used (no match, no labels.json, labels out of range)."""


@dataclasses.dataclass(frozen=True)
class RecordsInfo:
    """The training shards of a pattern and what `ksf make-tfrecords` wrote beside them.

    Attributes:
        files: tuple of str. The shards, sorted.
        num_classes: int. From `labels.json`.
        num_examples: int or None. From `manifest.json`, when it lists every shard.
    """

    files: tuple[str, ...]
    num_classes: int
    num_examples: int | None


def read_records_info(pattern: str) -> RecordsInfo:
    """Finds the shards of `pattern` and reads `labels.json` (and `manifest.json`) beside them.

    Works on any file system `tf.io.gfile` reads (local, `gs://`, ...).

    Returns:
        RecordsInfo with the number of classes and, when the manifest lists the shards, the
        number of examples in them.

    Raises:
        RecordsError: no shard matches, or no `labels.json` in the shards' folder.
        keras_sphereface.data.manifest.ManifestError: an unreadable labels or manifest file.
    """
    files = tuple(sorted(tf.io.gfile.glob(pattern)))
    if not files:
        raise RecordsError(f"No TFRecord file matches the pattern. Received: tfrecords={pattern!r}")
    num_classes = read_num_classes(list(files))
    if num_classes is None:
        raise RecordsError(f"No labels.json beside the records in {os.path.dirname(files[0])} (ksf make-tfrecords "
                           f"writes it); it gives the number of classes. Received: tfrecords={pattern!r}")
    return RecordsInfo(files, num_classes, count_examples(list(files)))


def check_worker_shards(records: RecordsInfo, placement: Placement, batch_size: int) -> None:
    """Refuses, on every worker alike, records where some worker's shards give no full batch.

    Each worker reads every `num_workers`-th file (`tf.data` file sharding). A worker whose files
    hold fewer examples than its replicas' share of one global batch would fail at its first
    step while the others wait for it in a collective; the example counts of `manifest.json`
    let every worker see this before training (without a manifest nothing is checked here).

    Raises:
        RecordsError: a worker's files hold fewer examples than its share of one global batch.
    """
    if placement.num_workers < 2:
        return
    entries = shard_entries(list(records.files))
    need = batch_size // placement.num_replicas * placement.local_replicas
    for worker in range(placement.num_workers):
        files = records.files[worker::placement.num_workers]
        counts = [(entries.get(f) or {}).get("num_examples") for f in files]
        if not all(isinstance(count, int) for count in counts):
            return
        held = sum(counts)
        if held < need:
            names = [os.path.basename(f) for f in files]
            raise RecordsError(
                f"With {placement.num_workers} workers, worker {worker} reads {len(names)} of the "
                f"{len(records.files)} TFRecord files ({', '.join(names) or 'none'}) holding {held} examples, "
                f"fewer than its share of one global batch ({need} of batch_size={batch_size}): it would have "
                f"no full batch to train on while the other workers wait for it. Write more, evenly filled "
                f"shards (ksf make-tfrecords deals examples round-robin) or lower batch_size.")


def input_size(config: TrainConfig, spec: ModelSpec) -> tuple[int, int]:
    """The run's `(height, width)`: `config.input_size`, else the zoo model's default."""
    return tuple(config.input_size) if config.input_size is not None else tuple(spec.input_size)


def make_dataset(config: TrainConfig, spec: ModelSpec, records: RecordsInfo, placement: Placement,
                 seed: int) -> tf.data.Dataset:
    """This worker's input of one pass: per-replica batches `(images, labels)`, preprocessed for the model.

    The pipeline's record check refuses a label outside `[0, num_classes)`, naming file and record.

    Returns:
        tf.data.Dataset of `(float32 (batch, height, width, 3), int32 (batch,))`, `batch` the
        per-replica share of `config.batch_size`.
    """
    context = None
    if placement.num_replicas > 1:
        context = tf.distribute.InputContext(num_input_pipelines=placement.num_workers,
                                             input_pipeline_id=placement.worker_index,
                                             num_replicas_in_sync=placement.num_replicas)
    dataset = tfrecord_dataset(list(records.files), config.batch_size, training=True,
                               image_size=input_size(config, spec), align=config.align, template=config.template,
                               normalization=None, shuffle_buffer=config.shuffle_buffer, seed=seed,
                               input_context=context, num_classes=records.num_classes,
                               **dataclasses.asdict(config.augmentation()))
    preprocess = spec.preprocess_input
    return dataset.map(lambda images, labels: (preprocess(images), labels), num_parallel_calls=tf.data.AUTOTUNE,
                       deterministic=True)


def epoch_seed(seed: int, epoch: int) -> int:
    """The input seed of one pass over the records: a new order and new augmentation draws in every epoch."""
    return (int(seed) + 1_000_003 * int(epoch)) % (2**31 - 1)


class EpochInput:
    """This worker's batches, one `tf.data` pass per epoch, each seeded by `epoch_seed`.

    Each epoch is its own dataset (not `.repeat()`), so a restored iterator never depends on
    random-generator state shared across epochs: the checkpoint holds the epoch number
    (`epoch`) and the position inside it (the iterator: file order, shuffle buffer, seeds).

    Args:
        make_dataset: callable `seed -> tf.data.Dataset` of one pass.
        seed: int. The run's seed.
        local_replicas: int. Per-replica batches pulled per global step.
        on_pass_start: callable `epoch -> None` or None. Called after each pass is opened.
    """

    def __init__(self, make_dataset: Callable[[int], tf.data.Dataset], seed: int, local_replicas: int,
                 on_pass_start: Callable[[int], None] | None = None):
        self.make_dataset, self.seed, self.local = make_dataset, seed, local_replicas
        self.on_pass_start = on_pass_start
        self.epoch = tf.Variable(0, dtype=tf.int64, trainable=False, name="data_epoch")
        self.checkpoint: tf.train.Checkpoint | None = None  # the one that tracks `input` (the iterator)
        self.iterator = None

    def start(self, epoch: int) -> None:
        """Opens the iterator of pass `epoch` (and puts it in the checkpoint)."""
        self.epoch.assign(epoch)
        self.iterator = iter(self.make_dataset(epoch_seed(self.seed, epoch)))
        if self.checkpoint is not None:
            self.checkpoint.input = self.iterator
        if self.on_pass_start is not None:
            self.on_pass_start(epoch)

    def next_batches(self) -> list:
        """One per-replica batch per local replica; a pass that runs out starts the next one.

        Raises:
            RecordsError: a fresh pass gives no full batch.
        """
        for attempt in range(2):
            try:
                return [next(self.iterator) for _ in range(self.local)]
            except StopIteration:
                if attempt:
                    break
                self.start(int(self.epoch.numpy()) + 1)
        raise RecordsError("The training records give no full batch in a pass; lower batch_size.")
