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
        centres: SampledCentres or None. Partial FC (`sample_rate < 1`): the head's `(classes, dim)`
            kernel rows, trained by their own sampled SGD update; their momentum is checkpointed.
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
    centres: SampledCentres | None = None


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
    with placement.strategy.scope():
        backbone = build_backbone(config, weights=config.weights)
        sampled = config.sample_rate < 1  # Partial FC: the head keeps its centres as rows, trained in place
        head = make_head(config.head, records.num_classes, {**config.head_options, "classes_first": sampled},
                         config.lambda_start)
        model = build_training_model(backbone, head, name=f"{spec.name}_{config.head}")
        centres = None
        if sampled:
            centres = SampledCentres(head, sampled_count(head.units, config.sample_rate, config.batch_size), seed)
        optimizer = make_optimizer(config)
        optimizer.build(optimized_variables(model, sampled))
        global_step = tf.Variable(0, dtype=tf.int64, trainable=False, name="global_step")
    single_worker = placement.num_workers == 1
    inputs = EpochInput(lambda input_seed: make_dataset(config, spec, records, placement, input_seed), seed,
                        placement.local_replicas, on_pass_start=on_pass_start)
    worker_inputs = None if single_worker else WorkerInputs(inputs, checkpoint_dir, placement,
                                                            config.keep_checkpoints)
    latest = latest_complete_checkpoint(checkpoint_dir) if config.resume else None
    start_epoch, input_file, input_note = 0, None, ""
    if latest is not None:
        reader = tf.train.load_checkpoint(latest)
        latest_step = int(reader.get_tensor(STEP_KEY))
        if single_worker:  # continue the pass the checkpoint was in
            if reader.has_tensor(EPOCH_KEY):
                start_epoch = int(reader.get_tensor(EPOCH_KEY))
        else:
            input_file = worker_inputs.find(latest_step)
            if input_file is not None:
                start_epoch = int(tf.train.load_checkpoint(input_file).get_tensor(EPOCH_KEY))
            else:  # written by another cluster size, or lost: a pass of its own, seeded by the step
                start_epoch = latest_step
                input_note = (f"; worker {placement.worker_index} has no input position of step {latest_step} "
                              f"for {placement.num_workers} workers, so it starts a new pass over its files")
    inputs.start(start_epoch)
    trackables = {"model": model, "optimizer": optimizer, "global_step": global_step}
    if centres is not None:
        trackables["centres_momentum"] = centres.momentum
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
    elif placement.is_chief and checkpoint_dir.is_dir() and any(checkpoint_dir.iterdir()) and not config.resume:
        shutil.rmtree(checkpoint_dir)
    saver = CheckpointSaver(manager, global_step, resumed_from, worker_inputs, placement.is_chief)
    return RunState(model, backbone, head, optimizer, global_step, inputs, saver, resumed_from, latest, input_note,
                    centres)
