"""`ksf train` killed with SIGKILL at many points and restarted with the same command ends exactly as an
uninterrupted run; a checkpoint write that hits a full disk stops with a clear error and keeps the
earlier checkpoints.

Real subprocesses on TFRecords of 8 LFW people (tiny Sphere-4, 14 steps, a checkpoint every 2 steps,
deterministic ops). The kill points inside a checkpoint write and the disk-full limit are set from
outside the library by `tests.reliability._kill_harness`, which then runs the real CLI.
"""

from __future__ import annotations

import csv
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from tests.conftest import REPO_ROOT

pytestmark = [pytest.mark.tf_backend, pytest.mark.slow]

STEPS = 14
_ENV = {"PYTHONPATH": str(REPO_ROOT), "TF_CPP_MIN_LOG_LEVEL": "2", "PYTHONUNBUFFERED": "1"}
# Piecewise learning rate (drops after steps 5 and 9) so that the schedule position matters.
_RECIPE = ('base = "lfw-devtrain_sphere4_asoftmax"\ninput_size = [32, 32]\nembedding_dim = 32\nalign = true\n'
           'shuffle_buffer = 64\nlog_every = 1\ncheckpoint_every = 2\nkeep_checkpoints = 3\ndeterministic = true\n'
           'lr_schedule = "piecewise"\nlr_boundaries = [5, 9]\n')
_TIMEOUT = 240


@pytest.fixture(scope="module")
def setup(lfw_dir, tmp_path_factory):
    """Records of 8 LFW people (as tests/training's `lfw_records`), the recipe, and the `ksf train` arguments."""
    from keras_sphereface.data.align import read_landmarks
    from keras_sphereface.data.records import write_tfrecords
    from tests.data.helpers import copy_people

    root = tmp_path_factory.mktemp("kill_resume")
    names = copy_people(lfw_dir, root / "photos", 8, min_images=4, per_person=6)
    points = read_landmarks(lfw_dir / "landmarks.txt")
    write_tfrecords(root / "photos", root / "records", num_shards=2, landmarks={n: points[n] for n in names},
                    workers=1)
    recipe = root / "tiny.toml"
    recipe.write_text(_RECIPE)
    args = ["train", "--tfrecords", str(root / "records" / "train-*.tfrecord"), "--recipe", str(recipe),
            "--batch-size", "8", "--steps", str(STEPS), "--seed", "3", "--no-progress"]
    return root, args


def _ksf(args, out) -> list[str]:
    return [sys.executable, "-m", "ksf", *args, "--out", str(out)]


def _harness(options, args, out) -> list[str]:
    return [sys.executable, "-m", "tests.reliability._kill_harness", *options, "--", *args, "--out", str(out)]


def _run(command) -> subprocess.CompletedProcess:
    return subprocess.run(command, capture_output=True, text=True, timeout=_TIMEOUT, cwd=REPO_ROOT,
                          env={**os.environ, **_ENV})


def _rows(out) -> list[dict]:
    with open(Path(out) / "metrics.csv", newline="") as handle:
        return [row for row in csv.DictReader(handle) if row["loss"]]


def _kill_when_logged(args, out, step: int) -> tuple[int, str]:
    """Runs the plain `ksf train` and SIGKILLs it from here once `metrics.csv` shows `step`."""
    process = subprocess.Popen(_ksf(args, out), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                               cwd=REPO_ROOT, env={**os.environ, **_ENV})
    try:
        deadline = time.monotonic() + _TIMEOUT
        while time.monotonic() < deadline and process.poll() is None:
            try:
                if any(int(row["step"]) >= step for row in _rows(out)):
                    process.send_signal(signal.SIGKILL)
                    break
            except (OSError, KeyError, ValueError):
                pass  # not written yet
            time.sleep(0.01)
        output, _ = process.communicate(timeout=60)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(timeout=30)
    return process.returncode, output


def _checkpoint_step(path) -> int:
    from keras_sphereface.training.checkpoints import checkpoint_step

    return checkpoint_step(str(path))


def _check_checkpoints(out) -> int | None:
    """Every checkpoint the state file lists with its files is fully readable; returns the step resumed from."""
    import tensorflow as tf

    from keras_sphereface.training import latest_complete_checkpoint

    folder = Path(out) / "checkpoints"
    state = tf.train.get_checkpoint_state(str(folder))
    for path in (state.all_model_checkpoint_paths if state else []):
        if Path(path + ".index").is_file():
            reader = tf.train.load_checkpoint(path)
            for name, dtype in reader.get_variable_to_dtype_map().items():
                if dtype != tf.variant:
                    reader.get_tensor(name)  # every tensor reads back
            assert _checkpoint_step(path) == int(Path(path).name.split("-")[1]), path
    latest = latest_complete_checkpoint(folder)
    if latest is None:
        return None
    step = _checkpoint_step(latest)
    iteration = [n for n, _ in tf.train.list_variables(latest) if n.endswith("iteration/.ATTRIBUTES/VARIABLE_VALUE")]
    assert len(iteration) == 1 and int(tf.train.load_checkpoint(latest).get_tensor(iteration[0])) == step
    return step


def _numeric_tensors(path) -> dict[str, np.ndarray]:
    import tensorflow as tf

    reader = tf.train.load_checkpoint(str(path))
    return {name: reader.get_tensor(name) for name, dtype in reader.get_variable_to_dtype_map().items()
            if dtype not in (tf.variant, tf.string) and not name.startswith("save_counter")}


def _h5_arrays(path) -> dict[str, np.ndarray]:
    import h5py

    arrays = {}
    with h5py.File(path, "r") as handle:
        handle.visititems(lambda name, item: arrays.__setitem__(name, item[()])
                          if isinstance(item, h5py.Dataset) else None)
    return arrays


def _max_difference(a: dict, b: dict) -> float:
    assert a.keys() == b.keys()
    worst = 0.0
    for name in a:
        np.testing.assert_allclose(a[name], b[name], rtol=1e-5, atol=1e-6, err_msg=name)
        if np.issubdtype(np.asarray(a[name]).dtype, np.number) and np.size(a[name]):
            worst = max(worst, float(np.max(np.abs(np.asarray(a[name], float) - np.asarray(b[name], float)))))
    return worst


# (harness kill point, the step of the newest complete checkpoint after the kill, what else must hold)
_KILLS = (
    ("input-start", None, "resumes what the external kill left"),
    ("after-step:5", 4, "step 5 done, its state not saved"),
    ("before-merge:8", 6, "ckpt-8_temp holds shard data + index, no ckpt-8.index"),
    ("before-state:10", 8, "ckpt-10 files complete but not listed"),
    ("state-rename:12", 10, "new state file written under a temporary name, not renamed"),
    ("after-checkpoint:12", 12, "ckpt-12 complete and listed"),
    ("final-keras", 14, "final checkpoint saved, final.keras only under its temporary name"),
)


def test_sigkill_at_many_points_then_the_same_command_ends_with_the_uninterrupted_weights(setup, capsys):
    root, args = setup
    started = time.monotonic()
    reference = root / "reference"
    straight = _run(_ksf(args, reference))
    assert straight.returncode == 0, straight.stdout[-3000:] + straight.stderr[-3000:]

    out = root / "killed"
    report = []
    # 1. An external SIGKILL (no hook at all) once the first step is logged.
    returncode, output = _kill_when_logged(args, out, 1)
    assert returncode == -signal.SIGKILL, output[-3000:]
    resume = _check_checkpoints(out)
    assert resume in (None, 2, 4), resume  # killed within the first few steps
    report.append(("external SIGKILL once metrics.csv shows step 1", resume))
    # 2.-8. SIGKILL from inside at the harness' points; each restart is the same command.
    for point, expected, _what in _KILLS:
        run = _run(_harness(["--kill-at", point], args, out))
        text = run.stdout + run.stderr
        assert run.returncode == -signal.SIGKILL, text[-3000:]
        assert f"[kill-harness] SIGKILL at {point}" in run.stdout, text[-3000:]
        if point == "input-start":
            pass  # killed before the run says where it starts
        elif resume is None:
            assert "Resuming from" not in run.stdout and "Training sphere4" in run.stdout, text[-3000:]
        else:
            assert f"Resuming from {out / 'checkpoints'}/ckpt-{resume}: step {resume}, epoch" in run.stdout, \
                text[-3000:]
        after = _check_checkpoints(out)
        assert after == (resume if expected is None else expected), (point, after)
        if point == "before-merge:8":
            assert list((out / "checkpoints" / "ckpt-8_temp").glob("part-*.data-*"))
            assert not (out / "checkpoints" / "ckpt-8.index").exists()
        elif point == "before-state:10":
            assert (out / "checkpoints" / "ckpt-10.index").is_file()
        elif point == "final-keras":
            assert not (out / "final.keras").exists() and list(out.glob(".final.keras.tmp-*"))
        report.append((point, after))
        resume = after
    # The same command, unhooked, finishes from the final checkpoint.
    last = _run(_ksf(args, out))
    assert last.returncode == 0, last.stdout[-3000:] + last.stderr[-3000:]
    assert f"Resuming from {out / 'checkpoints'}/ckpt-{STEPS}: step {STEPS}" in last.stdout
    assert f"Finished at step {STEPS}" in last.stdout
    assert not list(out.glob(".final.*.tmp-*")) and not list((out / "checkpoints").glob("*_temp"))

    # Same global step, A-Softmax iteration, optimizer iterations and momentum slots, learning rate and
    # data pass as the uninterrupted run; the same final weights; the same figures at every step
    # (each logged once: the data order and the learning-rate schedule continued where they stopped).
    final = out / "checkpoints" / f"ckpt-{STEPS}"
    assert _check_checkpoints(out) == STEPS
    checkpoint_difference = _max_difference(_numeric_tensors(reference / "checkpoints" / f"ckpt-{STEPS}"),
                                            _numeric_tensors(final))
    weight_difference = _max_difference(_h5_arrays(reference / "final.weights.h5"),
                                        _h5_arrays(out / "final.weights.h5"))
    rows, reference_rows = _rows(out), _rows(reference)
    assert [int(r["step"]) for r in rows] == list(range(1, STEPS + 1))
    for key in ("loss", "accuracy", "lambda", "lr", "epoch"):
        np.testing.assert_allclose([float(r[key]) for r in rows], [float(r[key]) for r in reference_rows],
                                   rtol=1e-5, err_msg=key)
    with capsys.disabled():
        print(f"\n{len(report)} SIGKILLs, then finished; resumed-from steps: {report}; max difference: checkpoint "
              f"{checkpoint_difference:.3g}, final weights {weight_difference:.3g}; "
              f"{time.monotonic() - started:.0f} s")


def _error_line(run) -> str:
    """The one `Error:` line of a run that failed with exit status 1 and no traceback."""
    assert run.returncode == 1, run.stdout[-3000:] + run.stderr[-3000:]
    assert "Traceback" not in run.stderr, run.stderr[-3000:]
    errors = [line for line in run.stderr.splitlines() if line.startswith("Error:")]
    assert len(errors) == 1, run.stderr[-3000:]
    return errors[0]


def test_disk_full_during_a_checkpoint_write_keeps_the_earlier_ones(setup):
    root, args = setup
    out = root / "disk_full"
    # After 2 checkpoints (steps 2 and 4) no file may grow past 1 MB: checkpoint 6 (13 MB) cannot be written.
    full = _run(_harness(["--fsize-after-saves", "2", "--fsize-limit", str(1_000_000)], args, out))
    error = _error_line(full)
    assert f"Could not write {out / 'checkpoints'}: disk full (file too large" in error
    assert "Checkpoint 6 was not saved" in error and "earlier checkpoints are kept" in error
    assert "ckpt-4, step 4" in error and "run the same command again to resume from step 4" in error
    # What was written before stays valid: ckpt-4 is the newest complete one and reads back; no partial leftovers.
    assert _check_checkpoints(out) == 4
    assert not list((out / "checkpoints").glob("ckpt-6*"))
    # Space is back: the same command resumes from step 4 and ends as the uninterrupted run does.
    again = _run(_ksf(args, out))
    assert again.returncode == 0, again.stdout[-3000:] + again.stderr[-3000:]
    assert f"Resuming from {out / 'checkpoints'}/ckpt-4: step 4" in again.stdout
    assert f"Finished at step {STEPS}" in again.stdout
    reference = root / "reference"
    if (reference / "final.weights.h5").is_file():
        _max_difference(_h5_arrays(reference / "final.weights.h5"), _h5_arrays(out / "final.weights.h5"))


def test_disk_full_while_writing_the_final_model_keeps_the_last_checkpoint(setup):
    root, args = setup
    out = root / "disk_full_final"
    # 6 checkpoints in the loop + the one at step 14, then the 1 MB limit: final.keras (6.5 MB) cannot be written.
    full = _run(_harness(["--fsize-after-saves", "7", "--fsize-limit", str(1_000_000)], args, out))
    error = _error_line(full)
    assert f"Could not write {out / 'final.keras'}: disk full" in error, full.stderr[-3000:]
    assert f"checkpoint of step {STEPS} is kept" in error and "run the same command again" in error
    assert _check_checkpoints(out) == STEPS
    assert not (out / "final.keras").exists() and not list(out.glob(".final.*"))
    again = _run(_ksf(args, out))
    assert again.returncode == 0, again.stdout[-3000:] + again.stderr[-3000:]
    assert f"Resuming from {out / 'checkpoints'}/ckpt-{STEPS}: step {STEPS}" in again.stdout
    reference = root / "reference"
    if (reference / "final.weights.h5").is_file():
        _max_difference(_h5_arrays(reference / "final.weights.h5"), _h5_arrays(out / "final.weights.h5"))
