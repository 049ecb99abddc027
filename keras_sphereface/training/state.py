"""What a run trains and restores: model, head, optimizer, step counter, input, and their checkpoint.

`build_state` builds them under the strategy, finds the newest complete checkpoint (when
resuming), opens the input at the pass that checkpoint was in, restores everything, and returns
a `RunState` ready for the first step. A run started again with the same `out` thereby continues
exactly where it stopped: a resumed run ends with the weights of an uninterrupted one (under
`deterministic=True`).
"""

from __future__ import annotations

import dataclasses
import shutil
from collections.abc import Callable
from pathlib import Path

import keras
import tensorflow as tf

from keras_sphereface.layers.partial_fc import sampled_count
from keras_sphereface.models import build_training_model
from keras_sphereface.models.zoo import ModelSpec
from keras_sphereface.training.backbone import build_backbone
from keras_sphereface.training.centre_init import CentresInitializer, fill_centres
from keras_sphereface.training.centre_momentum import check_momentum_storage
from keras_sphereface.training.checkpoints import (
    EPOCH_KEY,
    STEP_KEY,
    CheckpointSaver,
    WorkerInputs,
    latest_complete_checkpoint,
)
from keras_sphereface.training.config import TrainConfig
from keras_sphereface.training.distribute import Placement
from keras_sphereface.training.heads import make_head
from keras_sphereface.training.inputs import EpochInput, RecordsInfo, make_dataset
from keras_sphereface.training.partial_fc import SampledCentres
from keras_sphereface.training.sharded_head import ShardedCentres, check_shard_layout
from keras_sphereface.training.step import make_optimizer, optimized_variables


@dataclasses.dataclass
class RunState:
    """The objects of a run, restored when it resumes.

    Attributes:
        model: keras.Model `[images, labels] -> logits` (backbone + head).
        backbone, head: its two parts.
        optimizer: the optimizer (built).
        global_step: tf.Variable (int64). Global steps done.
        inputs: EpochInput. This worker's input, opened.
        saver: CheckpointSaver.
        resumed_from: int or None. The restored step.
        restored_path: str or None. The restored checkpoint.
        input_note: str. Said on resume when this worker starts a new pass instead of its saved position.
        centres: SampledCentres, ShardedCentres or None. Partial FC on one replica (`sample_rate < 1`):
            the head's `(classes, dim)` kernel rows, trained by their own sampled SGD update, their
            momentum checkpointed. A sharded head (`config.shards_head`): the centres split across
            replicas, each process checkpointing its own shards.
    """

    model: keras.Model
    backbone: keras.Model
    head: keras.layers.Layer
    optimizer: keras.optimizers.Optimizer
    global_step: tf.Variable
    inputs: EpochInput
    saver: CheckpointSaver
    resumed_from: int | None
    restored_path: str | None
    input_note: str = ""
    centres: SampledCentres | ShardedCentres | None = None


def build_state(config: TrainConfig, spec: ModelSpec, records: RecordsInfo, placement: Placement, seed: int,
                checkpoint_dir: Path, save_dir: Path,
                on_pass_start: Callable[[int], None] | None = None) -> RunState:
    """Builds the run's objects, and restores them from the newest complete checkpoint when resuming.

    Args:
        config: TrainConfig (validated, `steps` resolved).
        spec: ModelSpec of `config.model`.
        records: RecordsInfo of `config.tfrecords`.
        placement: Placement.
        seed: int. The run's seed (input passes are seeded from it).
        checkpoint_dir: Path. The run's `checkpoints` folder, which every worker restores from.
        save_dir: Path. Where this worker writes checkpoints (the chief: `checkpoint_dir`).
        on_pass_start: callable `epoch -> None` or None, called when each input pass opens.

    Returns:
        RunState. Without a checkpoint to resume from (or `resume=False`, which also clears an old
        `checkpoints` folder on the chief) the run starts at step 0, pass 0.
    """
    sharded = config.shards_head(placement.num_replicas)
    sampled = config.sample_rate < 1 and not sharded  # Partial FC on one replica: the kernel's rows trained in place
    # The seeded centres (`centre_init`) unless the recipe names an initializer; Partial FC's rows are
    # filled in place after the head is built (no second copy of the matrix).
    seeded = "kernel_initializer" not in config.head_options
    options = {"kernel_initializer": "zeros" if sampled else CentresInitializer(seed), **config.head_options,
               "classes_first": sampled, "external_centres": sharded}
    with placement.strategy.scope():
        backbone = build_backbone(config, weights=config.weights)
        head = make_head(config.head, records.num_classes, options, config.lambda_start)
        model = build_training_model(backbone, head, name=f"{spec.name}_{config.head}")
        centres = None
        if sampled:
            if seeded:
                fill_centres(head.kernel.value, seed, head.units, 0)
            centres = SampledCentres(head, sampled_count(head.units, config.sample_rate, config.batch_size), seed,
                                     config.centres_momentum)
        optimizer = make_optimizer(config)
        optimizer.build(optimized_variables(model, sampled))
        global_step = tf.Variable(0, dtype=tf.int64, trainable=False, name="global_step")
    if sharded:  # outside the scope: each shard is a plain variable on its replica's device
        centres = ShardedCentres(head, records.num_classes, int(backbone.output.shape[-1]), placement,
                                 config.sample_rate, config.batch_size, seed, config.centres_momentum)
    single_worker = placement.num_workers == 1
    inputs = EpochInput(lambda input_seed: make_dataset(config, spec, records, placement, input_seed), seed,
                        placement.local_replicas, on_pass_start=on_pass_start)
    worker_inputs = None if single_worker else WorkerInputs(inputs, checkpoint_dir, placement,
                                                            config.keep_checkpoints)
    latest = latest_complete_checkpoint(checkpoint_dir) if config.resume else None
    start_epoch, input_file, input_note = 0, None, ""
    if latest is not None:
        reader = tf.train.load_checkpoint(latest)
        check_shard_layout(reader, latest, placement.num_replicas, sharded)
        check_momentum_storage(reader, latest, config.centres_momentum)
        latest_step = int(reader.get_tensor(STEP_KEY))
        if single_worker:  # continue the pass the checkpoint was in
            if reader.has_tensor(EPOCH_KEY):
                start_epoch = int(reader.get_tensor(EPOCH_KEY))
        else:
            input_file = worker_inputs.find(latest_step)
            if input_file is not None:
                input_reader = tf.train.load_checkpoint(input_file)
                check_momentum_storage(input_reader, input_file, config.centres_momentum)
                start_epoch = int(input_reader.get_tensor(EPOCH_KEY))
            elif sharded:  # this worker's centres are in its own file, which another cluster size did not write
                raise ValueError(f"Worker {placement.worker_index} finds no file of its centres for step "
                                 f"{latest_step} with {placement.num_workers} workers in {checkpoint_dir}; resume "
                                 f"with the cluster that wrote the checkpoint, or pass --no-resume to start over.")
            else:  # written by another cluster size, or lost: a pass of its own, seeded by the step
                start_epoch = latest_step
                input_note = (f"; worker {placement.worker_index} has no input position of step {latest_step} "
                              f"for {placement.num_workers} workers, so it starts a new pass over its files")
    inputs.start(start_epoch)
    trackables = {"model": model, "optimizer": optimizer, "global_step": global_step}
    if sampled:
        trackables["centres_momentum"] = centres.momentum.trackable
    if sharded:  # the layout in the chief's checkpoint; the shards in each worker's own file (one worker: here)
        shards = centres.trackables()
        trackables["head_shards"] = shards.pop("head_shards")
        if single_worker:
            trackables.update(shards)
    if single_worker:
        trackables.update(data_epoch=inputs.epoch, input=inputs.iterator)
    checkpoint = tf.train.Checkpoint(**trackables)
    if single_worker:
        inputs.checkpoint = checkpoint
    else:
        worker_inputs.track(shards if sharded else None)
    manager = tf.train.CheckpointManager(checkpoint, str(save_dir), max_to_keep=config.keep_checkpoints,
                                         step_counter=global_step, checkpoint_name="ckpt")
    resumed_from = None
    if latest is not None:
        restore_checkpoint(checkpoint, latest)
        if input_file is not None:
            worker_inputs.restore(input_file)
        resumed_from = int(global_step.numpy())
    elif placement.is_chief and checkpoint_dir.is_dir() and any(checkpoint_dir.iterdir()) and not config.resume:
        shutil.rmtree(checkpoint_dir)
    saver = CheckpointSaver(manager, global_step, resumed_from, worker_inputs, placement.is_chief)
    return RunState(model, backbone, head, optimizer, global_step, inputs, saver, resumed_from, latest, input_note,
                    centres)


def restore_checkpoint(checkpoint: tf.train.Checkpoint, path: str) -> None:
    """Restores `path` into the run's objects; a checkpoint of another model or head is refused with a clear message.

    Raises:
        ValueError: a saved value does not fit its object (another model, head, embedding size,
            sample rate or class count).
    """
    try:
        checkpoint.restore(path).assert_existing_objects_matched()
    except (ValueError, AssertionError, tf.errors.InvalidArgumentError) as error:
        raise ValueError(f"Checkpoint {path} does not fit this run ({str(error).splitlines()[0][:300]}). It was "
                         f"written with other options (model, head, embedding_dim, classes, sample_rate or "
                         f"head_sharding): resume with the options of the run's config.toml, or pass --no-resume "
                         f"to start over.") from error
