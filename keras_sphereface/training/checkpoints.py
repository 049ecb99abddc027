"""Checkpoints of a run: their keys, completeness, saving with clean-up, and per-worker input positions.

A checkpoint (`tf.train.Checkpoint`, managed by `tf.train.CheckpointManager` in `<out>/checkpoints`)
holds the training model (backbone, head and the head's `iteration`), the optimizer (momentum
slots, its iteration count, the learning-rate variable and, under loss scaling, the scale and its
counter), `global_step`, and, when the run has one worker, the input position: the pass over the
records (`data_epoch`) and its iterator. With several workers each worker writes its own input
position beside it (`WorkerInputs`).
"""

from __future__ import annotations

import contextlib
import os
import shutil
from pathlib import Path

import tensorflow as tf

from keras_sphereface.training.distribute import Placement
from keras_sphereface.training.inputs import EpochInput
from keras_sphereface.utils.disk import as_write_error, clear_write_errors

CHECKPOINT_DIR = "checkpoints"
#: Keys of `global_step` and of the input pass (`data_epoch`) in a checkpoint (one worker's, or one input file).
STEP_KEY = "global_step/.ATTRIBUTES/VARIABLE_VALUE"
EPOCH_KEY = "data_epoch/.ATTRIBUTES/VARIABLE_VALUE"


def checkpoint_is_complete(path: str) -> bool:
    """Whether the checkpoint `path` (a prefix such as `.../ckpt-12`) has its index and data on disk."""
    return tf.io.gfile.exists(path + ".index") and bool(tf.io.gfile.glob(path + ".data-*"))


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
        if checkpoint_is_complete(full):
            return full
    return None


def checkpoint_step(path: str) -> int:
    """The `global_step` stored in the checkpoint `path`."""
    return int(tf.train.load_checkpoint(path).get_tensor(STEP_KEY))


def remove_partial_checkpoint(manager: tf.train.CheckpointManager, number: int) -> None:
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


def kept_checkpoint_hint(directory: str, number: int) -> str:
    """What a failed checkpoint write leaves: the newest complete checkpoint, and how to resume from it."""
    kept = latest_complete_checkpoint(directory)
    if kept is None:
        return (f"Checkpoint {number} was not saved and no earlier one exists; free space (or make the folder "
                f"writable) and run the same command again (it starts over).")
    step = checkpoint_step(kept)
    return (f"Checkpoint {number} was not saved; the earlier checkpoints are kept and complete (newest: {kept}, "
            f"step {step}). Free space (or make the folder writable) and run the same command again to resume "
            f"from step {step}.")


class WorkerInputs:
    """A multi-worker run's input position (and a sharded head's centres): each worker's own, beside the checkpoints.

    Each worker reads its own files, so its iterator and pass are its own and not in the chief's
    checkpoint. At every checkpoint step each worker writes them to
    `<out>/checkpoints/inputs/workers-<W>/worker-<i>/input-<step>` (on the file system that all
    workers already restore the chief's checkpoints from); a resumed run restores the one of the
    restored step. `W`, the number of workers, is in the path because the files a worker reads
    depend on it: a run resumed with another cluster size starts fresh passes instead. A sharded
    head's centres of the worker's replicas are written in the same file (`track(extra)`).

    Args:
        inputs: EpochInput. This worker's input.
        checkpoint_dir: Path. The run's `checkpoints` folder (the chief's).
        placement: Placement. Gives the number of workers and this worker's index.
        keep: int. Input positions kept (as `keep_checkpoints`).
    """

    def __init__(self, inputs: EpochInput, checkpoint_dir: Path, placement: Placement, keep: int):
        self.inputs, self.keep = inputs, keep
        workers, index = placement.num_workers, placement.worker_index
        self.folder = checkpoint_dir / "inputs" / f"workers-{workers}" / f"worker-{index}"
        self.checkpoint: tf.train.Checkpoint | None = None

    def path(self, step: int) -> str:
        """The checkpoint prefix of this worker's position at `step`."""
        return str(self.folder / f"input-{step}")

    def find(self, step: int) -> str | None:
        """The complete input checkpoint of `step` (its index is written last), or None."""
        path = self.path(step)
        return path if checkpoint_is_complete(path) else None

    def track(self, extra: dict | None = None) -> None:
        """Starts tracking the current iterator (after `inputs.start`), and `extra` objects of this worker's own.

        Args:
            extra: dict or None. Trackables only this worker holds (a sharded head's centres).
        """
        self.checkpoint = tf.train.Checkpoint(data_epoch=self.inputs.epoch, input=self.inputs.iterator,
                                              **(extra or {}))
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


class CheckpointSaver:
    """Saves the run's checkpoint at a step: atomically listed, partial files removed, a clear disk error.

    Args:
        manager: tf.train.CheckpointManager. Writes into this worker's folder.
        global_step: tf.Variable. The step counter (the checkpoint number).
        resumed_from: int or None. The step restored at start: saving it again is skipped.
        worker_inputs: WorkerInputs or None. Also written at each save in a multi-worker run.
        chief: bool. Only the chief's path is returned (workers write to temporary folders).
    """

    def __init__(self, manager: tf.train.CheckpointManager, global_step: tf.Variable, resumed_from: int | None,
                 worker_inputs: WorkerInputs | None, chief: bool):
        self.manager, self.global_step, self.resumed_from = manager, global_step, resumed_from
        self.worker_inputs, self.chief = worker_inputs, chief

    @property
    def latest(self) -> str | None:
        """The newest checkpoint of this worker's manager (the chief's is the run's)."""
        return self.manager.latest_checkpoint

    def save(self) -> str | None:
        """Writes the checkpoint of the current step; returns its path on the chief, else None.

        Raises:
            keras_sphereface.utils.disk.WriteError: the disk is full or the folder read-only; names
                the folder and the newest complete checkpoint, which is kept.
        """
        number = int(self.global_step.numpy())
        latest = self.manager.latest_checkpoint
        if number == self.resumed_from and latest and latest.endswith(f"-{number}") \
                and checkpoint_is_complete(latest):
            # Nothing ran since this checkpoint was restored: keep it rather than rewrite it in place.
            return latest if self.chief else None
        try:
            path = self.manager.save(checkpoint_number=number)
        except Exception as error:
            remove_partial_checkpoint(self.manager, number)
            clear = as_write_error(error, self.manager.directory)
            if clear is None:
                raise
            raise clear.with_hint(kept_checkpoint_hint(self.manager.directory, number)) from error
        if self.worker_inputs is not None:
            with clear_write_errors(self.worker_inputs.folder):
                self.worker_inputs.save(number)
        return path if self.chief else None
