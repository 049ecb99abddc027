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


def test_two_workers_train_to_identical_weights(lfw_records, tmp_path):
    ports = _free_ports(2)
    cluster = {"worker": [f"127.0.0.1:{port}" for port in ports]}
    out = tmp_path / "run"
    processes = []
    try:
        for index in range(2):
            tf_config = json.dumps({"cluster": cluster, "task": {"type": "worker", "index": index}})
            command = [sys.executable, "-m", "tests.training._worker", "multi-worker", lfw_records, str(out),
                       str(tmp_path / f"weights{index}.npz")]
            processes.append(subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                              env=_env(TF_CONFIG=tf_config), cwd=REPO_ROOT))
        outputs = [process.communicate(timeout=TIMEOUT_S) for process in processes]
    finally:
        for process in processes:
            if process.poll() is None:
                process.kill()
                process.wait(timeout=30)
    for process, (stdout, stderr) in zip(processes, outputs, strict=True):
        assert process.returncode == 0, stderr[-3000:]
        assert _last_json(stdout)["step"] == 3
    first, second = (np.load(tmp_path / f"weights{i}.npz") for i in range(2))
    assert len(first.files) == len(second.files) > 0
    for key in first.files:
        np.testing.assert_allclose(first[key], second[key], rtol=0, atol=1e-6)
    # Only the chief wrote the run folder; the other worker's checkpoints went to a removed temporary folder.
    assert (out / "final.weights.h5").is_file() and (out / "checkpoints").is_dir()
    assert sorted(p.name for p in Path(out).iterdir()) == sorted(
        ["checkpoints", "config.toml", "final.keras", "final.weights.h5", "logs", "metrics.csv"])
