"""MirroredStrategy on 2 logical CPU devices and MultiWorkerMirroredStrategy with 2 local worker processes."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from tests.conftest import REPO_ROOT

pytestmark = [pytest.mark.slow, pytest.mark.tf_backend]
TIMEOUT_S = 240


def _env(**extra) -> dict:
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT), "TF_CPP_MIN_LOG_LEVEL": "2", **extra}
    env.pop("TF_CONFIG", None)
    env.update(extra)
    return env


def _last_json(text: str) -> dict:
    lines = [line for line in text.splitlines() if line.startswith("{")]
    assert lines, text[-3000:]
    return json.loads(lines[-1])


def test_mirrored_on_two_logical_cpus_equals_one_device(lfw_records, tmp_path):
    run = subprocess.run([sys.executable, "-m", "tests.training._worker", "mirrored", lfw_records, str(tmp_path)],
                         capture_output=True, text=True, timeout=TIMEOUT_S, env=_env(), cwd=REPO_ROOT)
    assert run.returncode == 0, run.stderr[-3000:]
    result = _last_json(run.stdout)
    assert result["replicas"] == 2
    # Same global batch (8 = 2 x 4), same examples: the same weights up to summation order.
    assert result["max_difference"] < 1e-4 * max(1.0, result["weight_scale"]), result
    assert result["loss_mirrored"] == pytest.approx(result["loss_one"], rel=1e-4)
    # The A-Softmax iteration advances once per global step, not once per replica.
    assert result["iteration_mirrored"] == result["iteration_one"] == result["steps"] == result["step_mirrored"]


def _free_ports(count: int) -> list[int]:
    sockets = [socket.socket() for _ in range(count)]
    try:
        for s in sockets:
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in sockets]
    finally:
        for s in sockets:
            s.close()


def run_worker_pair(mode: str, records: str, out: Path, weights_prefix: Path, *extra: str) -> list[tuple]:
    """Runs `tests.training._worker MODE RECORDS OUT WEIGHTS_PREFIX<i>.npz *extra` as both workers of a
    2-worker cluster on 127.0.0.1; returns `(returncode, stdout, stderr)` of each.

    A hang (a worker waiting in a collective for a step the other never runs) fails at the timeout.
    """
    cluster = {"worker": [f"127.0.0.1:{port}" for port in _free_ports(2)]}
    processes = []
    try:
        for index in range(2):
            tf_config = json.dumps({"cluster": cluster, "task": {"type": "worker", "index": index}})
            command = [sys.executable, "-m", "tests.training._worker", mode, records, str(out),
                       f"{weights_prefix}{index}.npz", *extra]
            processes.append(subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                              env=_env(TF_CONFIG=tf_config), cwd=REPO_ROOT))
        outputs = [process.communicate(timeout=TIMEOUT_S) for process in processes]
    finally:
        for process in processes:
            if process.poll() is None:
                process.kill()
                process.wait(timeout=30)
    return [(process.returncode, stdout, stderr) for process, (stdout, stderr) in zip(processes, outputs, strict=True)]


def test_two_workers_train_to_identical_weights(lfw_records, tmp_path):
    out = tmp_path / "run"
    for returncode, stdout, stderr in run_worker_pair("multi-worker", lfw_records, out, tmp_path / "weights"):
        assert returncode == 0, stderr[-3000:]
        assert _last_json(stdout)["step"] == 3
    first, second = (np.load(tmp_path / f"weights{i}.npz") for i in range(2))
    assert len(first.files) == len(second.files) > 0
    for key in first.files:
        np.testing.assert_allclose(first[key], second[key], rtol=0, atol=1e-6)
    # Only the chief wrote the run folder; the other worker's checkpoints went to a removed temporary folder.
    assert (out / "final.weights.h5").is_file() and (out / "checkpoints").is_dir()
    assert sorted(p.name for p in Path(out).iterdir()) == sorted(
        ["checkpoints", "config.toml", "final.keras", "final.weights.h5", "logs", "metrics.csv"])


def _run_two_workers(records: str, out: Path, weights_prefix: Path, steps: int) -> list[dict]:
    """Both workers train (or resume) `out` to `steps` steps; returns each worker's JSON line."""
    results = []
    for returncode, stdout, stderr in run_worker_pair("multi-worker-steps", records, out, weights_prefix, str(steps)):
        assert returncode == 0, stderr[-3000:]
        results.append(_last_json(stdout))
    return results


def test_resumed_two_worker_run_restores_each_workers_input_position(lfw_records, tmp_path):
    straight = _run_two_workers(lfw_records, tmp_path / "straight", tmp_path / "straight", 8)
    first = _run_two_workers(lfw_records, tmp_path / "resumed", tmp_path / "first", 5)
    second = _run_two_workers(lfw_records, tmp_path / "resumed", tmp_path / "second", 8)
    assert [r["step"] for r in straight + first + second] == [8, 8, 5, 5, 8, 8]
    assert [r["resumed_from"] for r in second] == [5, 5]
    # Each worker wrote its own position (pass and iterator) beside the chief's checkpoints.
    inputs = tmp_path / "resumed" / "checkpoints" / "inputs" / "workers-2"
    assert all((inputs / f"worker-{i}" / "input-5.index").is_file() for i in range(2))
    # The same examples in the same order after the restart: the weights of the uninterrupted run.
    for index in range(2):
        expected, resumed = np.load(tmp_path / f"straight{index}.npz"), np.load(tmp_path / f"second{index}.npz")
        for key in expected.files:
            np.testing.assert_allclose(resumed[key], expected[key], rtol=1e-5, atol=1e-6)
