"""Choosing the `tf.distribute` strategy of a run, and who the chief is."""

from __future__ import annotations

import dataclasses
import json
import os

import tensorflow as tf


@dataclasses.dataclass(frozen=True)
class Placement:
    """Where a run executes.

    Attributes:
        strategy: `tf.distribute.Strategy`. The default strategy for one device.
        kind: str. `"one"`, `"mirrored"` or `"multi-worker"`.
        num_workers: int. Worker processes (1 unless multi-worker).
        worker_index: int. This worker's index (0 is the chief).
        num_replicas: int. Replicas over all workers; the global batch is split across them.
    """

    strategy: tf.distribute.Strategy
    kind: str
    num_workers: int = 1
    worker_index: int = 0
    num_replicas: int = 1

    @property
    def is_chief(self) -> bool:
        """Whether this process writes checkpoints, logs and the final model."""
        return self.worker_index == 0

    @property
    def local_replicas(self) -> int:
        """Replicas driven by this process."""
        return self.num_replicas // self.num_workers


def _tf_config() -> dict:
    text = os.environ.get("TF_CONFIG", "")
    if not text:
        return {}
    try:
        return json.loads(text)
    except json.JSONDecodeError as error:
        raise ValueError(f"TF_CONFIG is not valid JSON: {error}. Received: TF_CONFIG={text[:200]!r}") from error


def _workers_in_tf_config(config: dict) -> int:
    cluster = config.get("cluster", {})
    return len(cluster.get("worker", [])) + len(cluster.get("chief", []))


def make_placement(kind: str = "auto") -> Placement:
    """The strategy for `kind` (`"auto"`, `"one"`, `"mirrored"`, `"multi-worker"`).

    `"auto"` picks multi-worker when `TF_CONFIG` names more than one worker, mirrored when
    more than one GPU is visible, else one device. `"mirrored"` uses every visible GPU, or
    every logical CPU device when there is no GPU (as tests configure them). Multi-worker
    uses TensorFlow's collective runtime with the cluster of `TF_CONFIG`; it must be called
    before any other TensorFlow operation of the process.

    Raises:
        ValueError: `"multi-worker"` without a `TF_CONFIG` cluster, or an unknown kind.
    """
    tf_config = _tf_config()
    if kind == "auto":
        if _workers_in_tf_config(tf_config) > 1:
            kind = "multi-worker"
        elif len(tf.config.list_logical_devices("GPU")) > 1:
            kind = "mirrored"
        else:
            kind = "one"
    if kind == "one":
        return Placement(tf.distribute.get_strategy(), "one")
    if kind == "mirrored":
        devices = tf.config.list_logical_devices("GPU") or tf.config.list_logical_devices("CPU")
        strategy = tf.distribute.MirroredStrategy([d.name for d in devices])
        return Placement(strategy, "mirrored", num_replicas=strategy.num_replicas_in_sync)
    if kind == "multi-worker":
        if _workers_in_tf_config(tf_config) < 1:
            raise ValueError("strategy 'multi-worker' needs TF_CONFIG with a cluster of workers. Received: "
                             f"TF_CONFIG={os.environ.get('TF_CONFIG', '')!r}")
        strategy = tf.distribute.MultiWorkerMirroredStrategy()
        resolver = strategy.cluster_resolver
        task_type, task_id = resolver.task_type, resolver.task_id
        cluster = resolver.cluster_spec().as_dict()
        num_workers = len(cluster.get("worker", [])) + len(cluster.get("chief", []))
        # With a "chief" task, workers are numbered after it; without one, worker 0 is the chief.
        index = 0 if task_type == "chief" else int(task_id) + (1 if "chief" in cluster else 0)
        return Placement(strategy, "multi-worker", num_workers=num_workers, worker_index=index,
                         num_replicas=strategy.num_replicas_in_sync)
    raise ValueError(f"Unknown strategy; use auto, one, mirrored or multi-worker. Received: strategy={kind!r}")
