"""Multi-replica edge cases: a last partial batch under MirroredStrategy, and workers with unequal shards."""

from __future__ import annotations

import collections
import json
import math
import subprocess
import sys

import numpy as np
import pytest

from tests.conftest import REPO_ROOT
from tests.data.helpers import copy_people
from tests.training.conftest import IMAGES_PER_PERSON, NUM_PEOPLE
from tests.training.test_distributed import TIMEOUT_S, _env, _last_json, run_worker_pair

pytestmark = [pytest.mark.slow, pytest.mark.tf_backend]


def _check_steps(batches: list[dict], per_replica: int, replicas: int, all_labels: list[int]) -> dict[int, int]:
    """Every step: `replicas` full per-replica batches of finite images, no example twice in a pass.

    Returns the steps of each pass.
    """
    for step in batches:
        assert step["sizes"] == [per_replica] * replicas, step["sizes"]
        assert step["finite"]
    available = collections.Counter(all_labels)
    by_pass: dict[int, collections.Counter] = collections.defaultdict(collections.Counter)
    for step in batches:
        by_pass[step["epoch"]].update(step["labels"])
    for counts in by_pass.values():
        # A pass takes each record at most once: no label more often than the records hold it.
        assert all(counts[label] <= available[label] for label in counts), (counts, available)
    return dict(collections.Counter(step["epoch"] for step in batches))


def test_mirrored_last_partial_batch_is_dropped_every_pass(lfw_records, tmp_path):
    global_batch, steps = 10, 10
    run = subprocess.run([sys.executable, "-m", "tests.training._worker", "mirrored-edges", lfw_records,
                          str(tmp_path), str(global_batch), str(steps)],
                         capture_output=True, text=True, timeout=TIMEOUT_S, env=_env(), cwd=REPO_ROOT)
    assert run.returncode == 0, run.stderr[-3000:]
    result = _last_json(run.stdout)
    # batch_size 11 on 2 replicas is refused before anything runs.
    assert "batch_size must be a multiple of the 2 replicas" in result["refused"]
    assert "batch_size=11" in result["refused"]
    examples = result["num_examples"]
    assert examples == len(result["all_labels"])
    per_pass = examples // global_batch
    # The records leave a remainder of at least one per-replica batch: one replica's batch is
    # there at the end of a pass and the other's is not.
    assert examples % global_batch >= global_batch // 2, examples
    assert result["step"] == steps == len(result["batches"]) == len(result["losses"])
    passes = _check_steps(result["batches"], global_batch // 2, 2, result["all_labels"])
    # floor(examples / global batch) steps per pass; the remainder (a lone per-replica batch and
    # the short rest) is dropped and the next step starts the next pass.
    expected = {epoch: min(per_pass, steps - epoch * per_pass) for epoch in range(math.ceil(steps / per_pass))}
    assert passes == expected
    assert all(math.isfinite(loss) for loss in result["losses"]), result["losses"]
    assert result["weights_finite"]
    assert result["epoch"] == pytest.approx(steps / per_pass)
    print(json.dumps({"examples": examples, "steps_per_pass": passes, "losses": result["losses"]}))


@pytest.fixture(scope="module")
def three_shard_records(lfw_dir, tmp_path_factory):
    """The training fixture's photos in 3 shards: with 2 workers, worker 0 reads 2 shards and worker 1 one."""
    from keras_sphereface.data.align import read_landmarks
    from keras_sphereface.data.records import write_tfrecords

    root = tmp_path_factory.mktemp("three_shards")
    names = copy_people(lfw_dir, root / "photos", NUM_PEOPLE, min_images=4, per_person=IMAGES_PER_PERSON)
    points = read_landmarks(lfw_dir / "landmarks.txt")
    write_tfrecords(root / "photos", root / "records", num_shards=3, landmarks={n: points[n] for n in names},
                    workers=1)
    manifest = json.loads((root / "records" / "manifest.json").read_text())
    shards = sorted(manifest["splits"]["train"]["shards"], key=lambda shard: shard["file"])
    return (str(root / "records" / "train-*.tfrecord"), [shard["file"] for shard in shards],
            [shard["num_examples"] for shard in shards])


def _run_workers(mode_args: list[str], records: str, tmp_path) -> list[tuple[int, str, str]]:
    return run_worker_pair("multi-worker-edges", records, tmp_path / "run", tmp_path / "weights", *mode_args)


def test_two_workers_with_unequal_shards_stay_in_step(three_shard_records, tmp_path):
    records, files, sizes = three_shard_records
    global_batch, steps = 8, 10
    per_replica = global_batch // 2
    worker_examples = [sizes[0] + sizes[2], sizes[1]]
    assert worker_examples[0] > worker_examples[1]
    results = []
    for returncode, stdout, stderr in _run_workers([str(global_batch), str(steps)], records, tmp_path):
        assert returncode == 0, stderr[-3000:]
        results.append(_last_json(stdout))
    assert [result["files"] for result in results] == [[files[0], files[2]], [files[1]]]
    passes = []
    for result, examples in zip(results, worker_examples, strict=True):
        assert len(result["own_labels"]) == examples
        # Both workers run every global step (the shorter shard starts its next pass sooner).
        assert result["step"] == steps == len(result["batches"]) == len(result["losses"])
        per_pass = examples // per_replica
        passes.append(_check_steps(result["batches"], per_replica, 1, result["own_labels"]))
        expected = {e: min(per_pass, steps - e * per_pass) for e in range(math.ceil(steps / per_pass))}
        assert passes[-1] == expected
    assert max(passes[1]) > max(passes[0])
    # The loss is reduced over both workers: the same figure, finite, on each.
    assert results[0]["losses"] == pytest.approx(results[1]["losses"], rel=1e-6)
    assert all(math.isfinite(loss) for loss in results[0]["losses"])
    first, second = (np.load(tmp_path / f"weights{i}.npz") for i in range(2))
    assert len(first.files) == len(second.files) > 0
    for key in first.files:
        assert np.all(np.isfinite(first[key]))
        np.testing.assert_allclose(first[key], second[key], rtol=0, atol=1e-6)
    difference = max(float(np.max(np.abs(first[key] - second[key]))) for key in first.files)
    print(json.dumps({"worker_examples": worker_examples, "steps_per_pass": passes, "losses": results[0]["losses"],
                      "max_weight_difference": difference}))


@pytest.fixture(scope="module")
def lopsided_records(lfw_dir, tmp_path_factory):
    """2 shards: the training photos, and 3 photos of one person (fewer than one per-replica batch of 4)."""
    import shutil

    from keras_sphereface.data.align import read_landmarks
    from keras_sphereface.data.records import write_tfrecords

    root = tmp_path_factory.mktemp("lopsided")
    points = read_landmarks(lfw_dir / "landmarks.txt")
    shards = []
    for name, people, per_person in (("big", NUM_PEOPLE, IMAGES_PER_PERSON), ("small", 1, 3)):
        names = copy_people(lfw_dir, root / name / "photos", people, min_images=4, per_person=per_person)
        write_tfrecords(root / name / "photos", root / name / "records", num_shards=1,
                        landmarks={n: points[n] for n in names}, workers=1)
        manifest = json.loads((root / name / "records" / "manifest.json").read_text())
        (shard,) = manifest["splits"]["train"]["shards"]
        shards.append((root / name / "records" / shard["file"], shard["num_examples"]))
    records = root / "records"
    records.mkdir()
    shutil.copy(root / "big" / "records" / "labels.json", records / "labels.json")
    entries = []
    for index, (path, count) in enumerate(shards):
        target = records / f"train-{index:05d}-of-00002.tfrecord"
        shutil.copy(path, target)
        entries.append({"file": target.name, "num_examples": count, "bytes": target.stat().st_size})
    (records / "manifest.json").write_text(json.dumps({"splits": {"train": {"shards": entries}}}))
    return str(records / "train-*.tfrecord"), [count for _, count in shards]


def test_a_worker_whose_shards_give_no_batch_is_refused_on_every_worker(lopsided_records, tmp_path):
    records, sizes = lopsided_records
    assert sizes[1] < 4  # worker 1's shard: 3 examples, its per-replica batch: 8 / 2 = 4
    for returncode, stdout, stderr in _run_workers(["8", "4"], records, tmp_path):
        # Both stop before the first step with the same message; neither waits in a collective
        # for a peer that has already failed.
        assert returncode != 0, stdout[-2000:]
        assert "RecordsError: With 2 workers, worker 1 reads 1 of the 2 TFRecord files" in stderr, stderr[-3000:]
        assert f"holding {sizes[1]} examples, fewer than its share of one global batch (4 of batch_size=8)" in stderr
        assert "Collective" not in stderr and "Unavailable" not in stderr
        assert '"step"' not in stdout
