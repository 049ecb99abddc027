"""The class-sharded head: two MirroredStrategy replicas on logical CPUs against the full head on one device."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf

from keras_sphereface.training.sharded_head import shard_bounds
from tests.conftest import REPO_ROOT
from tests.training.test_distributed import TIMEOUT_S, _env, _last_json, run_worker_pair


def test_shard_bounds_split_every_class_once():
    assert shard_bounds(10, 3) == [(0, 4), (4, 7), (7, 10)]
    assert shard_bounds(4, 4) == [(0, 1), (1, 2), (2, 3), (3, 4)]
    with pytest.raises(ValueError, match="one class per replica"):
        shard_bounds(3, 4)


@pytest.mark.slow
@pytest.mark.tf_backend
def test_sharded_head_on_two_replicas_equals_the_full_head(lfw_records, tmp_path):
    run = subprocess.run([sys.executable, "-m", "tests.training._worker", "sharded", lfw_records, str(tmp_path)],
                         capture_output=True, text=True, timeout=2 * TIMEOUT_S, env=_env(), cwd=REPO_ROOT)
    assert run.returncode == 0, run.stderr[-3000:]
    result = _last_json(run.stdout)
    print(result)
    losses = result["losses"]
    assert result["step_sharded"] == result["steps"]
    # Rate 1.0 split over two replicas: the losses, backbone and centres of the full head on one device.
    assert losses["sharded"] == pytest.approx(losses["one"], rel=1e-4)
    assert result["backbone_difference"] < 1e-4 * max(1.0, result["backbone_scale"]), result
    assert result["centres_difference"] < 1e-4 * max(1.0, result["centres_scale"]), result
    assert result["centres_moved"] > 1e-3  # (both trained their centres from the same seeded start)
    assert result["iteration_sharded"] == result["iteration_one"] == result["steps"]
    # Resumed from step 2 (its shards and their momentum restored): the uninterrupted run.
    assert result["resumed_from"] == 2
    assert losses["resumed"] == pytest.approx(losses["sharded"][2:], rel=1e-5)
    assert result["resumed_difference"] < 1e-5 and result["resumed_centres_difference"] < 1e-5
    # Partial FC on two replicas (auto shards it): trains, finite.
    assert result["sampled_step"] == result["steps"] and result["sampled_finite"]
    # The sharded checkpoint resumed on one device: refused, saying how to resume.
    assert "split over 2 replicas" in result["refused"] and "--no-resume" in result["refused"]


@pytest.mark.slow
@pytest.mark.tf_backend
def test_sampled_shards_give_the_softmax_over_their_sampled_classes():
    run = subprocess.run([sys.executable, "-m", "tests.training._worker", "sharded-sample"],
                         capture_output=True, text=True, timeout=TIMEOUT_S, env=_env(), cwd=REPO_ROOT)
    assert run.returncode == 0, run.stderr[-3000:]
    result = _last_json(run.stdout)
    sampled, labels = np.array(result["sampled"]), np.array(result["labels"])
    # 40 classes over 2 shards at rate 0.25: 8 centres per shard (the global batch), every positive among them.
    assert len(sampled) == 16 and np.all(np.diff(sampled) > 0)  # each shard's ids, sorted, in shard order
    assert set(labels) <= set(sampled)
    # An independent NumPy CosFace softmax over the sampled classes only.
    centres = np.array(result["centres"])[sampled]
    embeddings = np.array(result["embeddings"])
    cosines = (embeddings / np.linalg.norm(embeddings, axis=1, keepdims=True)) @ (
        centres / np.linalg.norm(centres, axis=1, keepdims=True)).T
    targets = np.searchsorted(sampled, labels)
    logits = result["s"] * cosines
    logits[np.arange(len(labels)), targets] -= result["s"] * result["m"]
    shifted = logits - logits.max(axis=1, keepdims=True)
    log_softmax = shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))
    expected = -log_softmax[np.arange(len(labels)), targets].mean()
    assert result["loss"] == pytest.approx(expected, rel=1e-5)
    assert result["correct"] == float(np.sum(np.argmax(logits, axis=1) == targets))


def _two_workers(records: str, out, weights_prefix, steps: int, sharding: str) -> list[dict]:
    results = []
    for returncode, stdout, stderr in run_worker_pair("multi-worker-steps", records, out, weights_prefix, str(steps),
                                                      sharding):
        assert returncode == 0, stderr[-3000:]
        results.append(_last_json(stdout))
    return results


@pytest.mark.slow
@pytest.mark.tf_backend
def test_two_workers_with_sharded_centres_train_and_resume_as_replicated_ones(lfw_records, tmp_path):
    replicated = _two_workers(lfw_records, tmp_path / "replicated", tmp_path / "replicated", 6, "replicated")
    first = _two_workers(lfw_records, tmp_path / "sharded", tmp_path / "first", 4, "sharded")
    second = _two_workers(lfw_records, tmp_path / "sharded", tmp_path / "second", 6, "sharded")
    assert [r["step"] for r in replicated + first + second] == [6, 6, 4, 4, 6, 6]
    assert [r["resumed_from"] for r in second] == [4, 4]
    # Each worker kept its own shard of the centres (and their momentum) beside the chief's checkpoint.
    for index in range(2):
        path = tmp_path / "sharded" / "checkpoints" / "inputs" / "workers-2" / f"worker-{index}" / "input-4"
        names = [name for name, _ in tf.train.list_variables(str(path))]
        assert "centres/0/.ATTRIBUTES/VARIABLE_VALUE" in names and any(n.startswith("centres_momentum/") for n in names)
    # Split over the two workers and resumed: the backbone of the replicated head's run.
    for index in range(2):
        expected, sharded = np.load(tmp_path / f"replicated{index}.npz"), np.load(tmp_path / f"second{index}.npz")
        for key in expected.files:
            np.testing.assert_allclose(sharded[key], expected[key], rtol=1e-4, atol=1e-5)
