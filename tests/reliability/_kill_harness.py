"""Runs `ksf train` in this process and SIGKILLs it at a chosen point, or makes its disk "full".

    python -m tests.reliability._kill_harness [--kill-at POINT] [--fsize-after-saves K --fsize-limit BYTES]
        -- train --tfrecords ... --out ...

The input-start and after-step points are a `TrainCallback` (the run's public hooks) that
`keras_sphereface.training.train` is wrapped to add; the checkpoint and final-model points wrap
TensorFlow and Keras functions from outside. Then it runs the real CLI (`ksf.main.cli`). A kill is
`os.kill(os.getpid(), SIGKILL)`: nothing is flushed or cleaned up, as when the machine loses power or the OOM
killer strikes.

Kill points (`K` is a global step / checkpoint number):

- `input-start`: the first tf.data pass was just opened (before any checkpoint is restored or step run).
- `after-step:K`: step K's update is applied and logged, its checkpoint (if any) not written.
- `before-merge:K`: checkpoint K's shard files (data + shard index) are written in `ckpt-K_temp/`;
  TF's merge into `ckpt-K.index` / `ckpt-K.data-*` has not run.
- `before-state:K`: `ckpt-K.index` and `ckpt-K.data-*` are complete; `CheckpointManager` has not yet
  recorded them in its `checkpoint` state file.
- `state-rename:K`: the new `checkpoint` state file listing K is written to its temporary name; the
  rename over the old one has not happened.
- `after-checkpoint:K`: `CheckpointManager.save` for K returned (the checkpoint is complete and listed).
- `final-keras`: `final.keras` is written to its temporary sibling; it is not renamed into place.

`--fsize-after-saves K --fsize-limit BYTES` lowers RLIMIT_FSIZE once K checkpoints were saved: the
kernel then refuses to grow any file past BYTES (EFBIG; CPython ignores SIGXFSZ), as a full disk would.
"""

from __future__ import annotations

import argparse
import os
import resource
import signal
import sys


def _die(point: str) -> None:
    print(f"[kill-harness] SIGKILL at {point}", flush=True)
    os.kill(os.getpid(), signal.SIGKILL)


def _checkpoint_number(prefix) -> int | None:
    text = prefix.numpy().decode() if hasattr(prefix, "numpy") else str(prefix)
    tail = os.path.basename(text).rsplit("-", 1)[-1]
    return int(tail) if tail.isdigit() else None


def _kill_through_callback(name: str, k: int | None, kill_at: str) -> None:
    """Kills from the run's own hooks: `train` is wrapped to add a `TrainCallback` that dies at the point."""
    import keras_sphereface.training as training

    class Killer(training.TrainCallback):
        def on_pass_start(self, epoch):
            if name == "input-start":
                _die(kill_at)

        def on_log(self, row):
            if name == "after-step" and int(row["step"]) == k and row.get("loss") is not None:
                _die(kill_at)

    original_train = training.train

    def train(config, callbacks=()):
        return original_train(config, callbacks=[*callbacks, Killer()])

    training.train = train


def install(kill_at: str | None, fsize_after_saves: int | None, fsize_limit: int | None) -> None:
    """Wraps the functions the chosen point needs (see the module docstring)."""
    import tensorflow as tf

    name, _, number = (kill_at or "").partition(":")
    k = int(number) if number else None
    saves = {"count": 0}

    if name in ("input-start", "after-step"):
        _kill_through_callback(name, k, kill_at)
    elif name in ("before-merge", "before-state", "state-rename"):
        from tensorflow.python.lib.io import file_io
        from tensorflow.python.ops import gen_io_ops

        original_merge = gen_io_ops.merge_v2_checkpoints
        merged = {"number": None}

        def merge(checkpoint_prefixes, destination_prefix, *args, **kwargs):
            number = _checkpoint_number(destination_prefix)
            if name == "before-merge" and number == k:
                _die(kill_at)
            result = original_merge(checkpoint_prefixes, destination_prefix, *args, **kwargs)
            merged["number"] = number
            if name == "before-state" and number == k:
                _die(kill_at)
            return result

        gen_io_ops.merge_v2_checkpoints = merge
        if name == "state-rename":
            original_rename = file_io.rename

            def rename(old, new, overwrite=False):
                if os.path.basename(os.fspath(new)) == "checkpoint" and merged["number"] == k:
                    _die(kill_at)
                return original_rename(old, new, overwrite)

            file_io.rename = rename
    elif name == "final-keras":
        import keras

        original_save = keras.Model.save

        def save(self, filepath, *args, **kwargs):
            original_save(self, filepath, *args, **kwargs)
            if os.path.basename(os.fspath(filepath)).startswith(".final.keras.tmp-"):  # atomic_path's temporary
                _die(kill_at)

        keras.Model.save = save
    elif name not in ("", "after-checkpoint"):
        raise SystemExit(f"unknown kill point {kill_at!r}")

    if name == "after-checkpoint" or fsize_after_saves is not None:
        original_manager_save = tf.train.CheckpointManager.save

        def manager_save(self, checkpoint_number=None, *args, **kwargs):
            path = original_manager_save(self, checkpoint_number, *args, **kwargs)
            saves["count"] += 1
            if name == "after-checkpoint" and checkpoint_number is not None and int(checkpoint_number) == k:
                _die(kill_at)
            if fsize_after_saves is not None and saves["count"] == fsize_after_saves:
                hard = resource.getrlimit(resource.RLIMIT_FSIZE)[1]
                resource.setrlimit(resource.RLIMIT_FSIZE, (fsize_limit, hard))
                print(f"[kill-harness] RLIMIT_FSIZE = {fsize_limit} bytes after {fsize_after_saves} checkpoint(s)",
                      flush=True)
            return path

        tf.train.CheckpointManager.save = manager_save


def main(argv: list[str] | None = None) -> None:
    argv = list(sys.argv[1:] if argv is None else argv)
    if "--" not in argv:
        raise SystemExit("usage: _kill_harness [options] -- train ...")
    split = argv.index("--")
    parser = argparse.ArgumentParser(prog="_kill_harness")
    parser.add_argument("--kill-at")
    parser.add_argument("--fsize-after-saves", type=int)
    parser.add_argument("--fsize-limit", type=int)
    options = parser.parse_args(argv[:split])
    from ksf.main import _import_tensorflow_quietly, cli

    _import_tensorflow_quietly()
    install(options.kill_at, options.fsize_after_saves, options.fsize_limit)
    cli.main(args=argv[split + 1:], prog_name="ksf")


if __name__ == "__main__":
    main()
