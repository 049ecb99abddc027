"""Partial FC against the full margin head: step time and peak memory at 100k to 2M classes.

One training step of the ArcFace head alone (s=64, m=0.5) on random `(batch, dim)` embeddings:
forward, cross-entropy, the gradient of the centres and of the embeddings (what the backbone would
receive), and the SGD momentum update. `sample_rate = 1.0` is the full head as `ksf train` runs it
(`keras.optimizers.SGD` on the `(dim, classes)` kernel); below 1.0 the step samples its centres
(`keras_sphereface.training.partial_fc.SampledCentres`: all positives plus uniform negatives) and
updates only the sampled rows. New labels every step (uniform over the classes).

Each configuration runs in its own process, so its peak resident memory (`ru_maxrss`) is its own.
A configuration whose estimate (`keras_sphereface.training.head_memory`) exceeds the memory
available is not started; its line says so. Ratios are to the full head of the same class count.

With `--shards N` the head is sharded over N MirroredStrategy replicas on logical CPUs of this machine
(`keras_sphereface.training.sharded_head`: all-gathers and all-reduces of every step); ratios are then to the
sharded full head.

With `--centres-momentum float32,int8` each sampled (or sharded) configuration runs once per storage of the
centres' momentum (`keras_sphereface.training.centre_momentum`).

Usage: python bench/partial_fc.py [--classes 100000,1000000,2000000] [--rates 1.0,0.3,0.1]
       [--batch 64] [--dim 512] [--steps 5] [--shards 1] [--centres-momentum float32,int8]
Prints one JSON line per configuration (`bench/_report.py` header).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]


def _sharded_step(classes: int, rate: float, batch: int, dim: int, shards: int, storage: str):
    """The head step sharded over `shards` MirroredStrategy replicas on logical CPUs (`ShardedCentres`)."""
    import tensorflow as tf

    cpu = tf.config.list_physical_devices("CPU")[0]
    tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * shards)
    from keras_sphereface.layers import ArcFace
    from keras_sphereface.training.distribute import make_placement
    from keras_sphereface.training.sharded_head import ShardedCentres

    placement = make_placement("mirrored")
    with placement.strategy.scope():
        head = ArcFace(classes, s=64.0, m=0.5, external_centres=True)
        head.build((batch, dim))
    centres = ShardedCentres(head, classes, dim, placement, rate, batch, seed=0, momentum_storage=storage)
    local = batch // shards
    embeddings = [tf.random.stateless_normal((local, dim), seed=[0, r]) for r in range(shards)]

    @tf.function
    def step(i):
        labels = tf.random.stateless_uniform((batch,), seed=[1, i], maxval=classes, dtype=tf.int32)
        values = placement.strategy.experimental_distribute_values_from_function(
            lambda context: (embeddings[context.replica_id_in_sync_group],
                             labels[local * context.replica_id_in_sync_group:][:local]))

        def replica(inputs):
            part = centres.step(inputs[0], inputs[1], i, tf.constant(1.0))
            centres.apply_sgd(part, part.d_rows, tf.constant(0.01), momentum=0.9)
            return part.cross_entropy

        return placement.strategy.reduce("SUM", placement.strategy.run(replica, args=(values,)), axis=None)

    return step


def _worker(classes: int, rate: float, batch: int, dim: int, steps: int, shards: int = 1,
            storage: str = "float32") -> dict:
    """Times `steps` head steps in this process (after one that traces); returns ms per step and peak RSS.

    The centres start as `ksf train` starts them (`keras_sphereface.training.centre_init`): the full head
    through its initializer, Partial FC's rows and the shards filled in place.
    """
    import resource
    import time

    if shards > 1:
        step = _sharded_step(classes, rate, batch, dim, shards, storage)
        return _time(step, steps, resource, time)

    import keras
    import tensorflow as tf

    from keras_sphereface.layers import ArcFace
    from keras_sphereface.layers.partial_fc import sampled_count, sampled_margin_logits
    from keras_sphereface.training.centre_init import CentresInitializer, fill_centres
    from keras_sphereface.training.partial_fc import SampledCentres

    embeddings = tf.Variable(tf.random.stateless_normal((batch, dim), seed=[0, 1]))
    sampled = rate < 1.0  # Partial FC trains the rows in place
    head = ArcFace(classes, s=64.0, m=0.5, classes_first=sampled,
                   kernel_initializer="zeros" if sampled else CentresInitializer(0))
    head.build([(batch, dim), (batch, 1)])
    if sampled:
        fill_centres(head.kernel.value, 0, classes, 0)
    learning_rate = tf.constant(0.01)

    def labels_of(step):
        return tf.random.stateless_uniform((batch, 1), seed=[1, step], maxval=classes, dtype=tf.int32)

    def cross_entropy(labels, logits):
        return tf.reduce_mean(tf.nn.sparse_softmax_cross_entropy_with_logits(tf.reshape(labels, (-1,)), logits))

    if rate >= 1.0:
        optimizer = keras.optimizers.SGD(learning_rate=0.01, momentum=0.9)
        optimizer.build([head.kernel])

        @tf.function
        def step(i):
            labels = labels_of(i)
            with tf.GradientTape() as tape:
                loss = cross_entropy(labels, head([embeddings, labels], training=True))
            kernel_grad, _ = tape.gradient(loss, [head.kernel, embeddings])
            optimizer.apply_gradients([(kernel_grad, head.kernel)])
            return loss
    else:
        centres = SampledCentres(head, sampled_count(classes, rate, batch), seed=0, momentum_storage=storage)

        @tf.function
        def step(i):
            index, sampled_labels = centres.sample(labels_of(i), i)
            rows = centres.gather(index)
            with tf.GradientTape() as tape:
                tape.watch(rows)
                logits = sampled_margin_logits(head, embeddings, rows, sampled_labels)
                loss = cross_entropy(sampled_labels, logits)
            rows_grad, _ = tape.gradient(loss, [rows, embeddings])
            centres.apply_sgd(index, rows, rows_grad, learning_rate, momentum=0.9)
            return loss

    return _time(step, steps, resource, time)


def _time(step, steps: int, resource, time) -> dict:
    """Median ms of `steps` calls of `step` after one that traces; peak RSS before the first step and overall."""
    built_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    step(tf_constant(0))  # trace; create the slots
    times = []
    for i in range(1, steps + 1):
        start = time.perf_counter()
        float(step(tf_constant(i)))
        times.append(time.perf_counter() - start)
    peak_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return {"ms_per_step": round(1000 * statistics.median(times), 1), "peak_rss_mb": round(peak_kib / 1024, 1),
            "peak_rss_before_step_mb": round(built_kib / 1024, 1)}


def tf_constant(i: int):
    import tensorflow as tf

    return tf.constant(i, tf.int64)


def _run_worker(classes: int, rate: float, storage: str, args) -> dict:
    command = [sys.executable, __file__, "--worker", f"{classes},{rate},{args.shards},{storage}",
               "--batch", str(args.batch), "--dim", str(args.dim), "--steps", str(args.steps)]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO_ROOT), os.environ.get("PYTHONPATH", "")])}
    done = subprocess.run(command, capture_output=True, text=True, env=env)
    lines = [line for line in done.stdout.splitlines() if line.startswith("{")]
    if done.returncode != 0 or not lines:
        return {"error": f"worker exited with {done.returncode}: {done.stderr.strip()[-400:]}"}
    return json.loads(lines[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--classes", default="100000,1000000,2000000")
    parser.add_argument("--rates", default="1.0,0.3,0.1")
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--dim", type=int, default=512)
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--shards", type=int, default=1, help="Shard the centres over this many MirroredStrategy "
                        "replicas on logical CPUs (the same machine: per-replica memory falls, the total does not)")
    parser.add_argument("--centres-momentum", default="float32", help="Comma-separated storages of the sampled or "
                        "sharded centres' momentum (float32, int8): a row for each")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        classes, rate, shards, storage = args.worker.split(",")
        print(json.dumps(_worker(int(classes), float(rate), args.batch, args.dim, args.steps, int(shards), storage)))
        return

    sys.path.insert(0, str(Path(__file__).parent))
    sys.path.insert(0, str(REPO_ROOT))
    from keras_sphereface.training.config import head_updates_centres

    for classes in (int(c) for c in args.classes.split(",")):
        full = None
        for rate in (float(r) for r in args.rates.split(",")):
            # The storage applies only to centres the head updates itself.
            storages = args.centres_momentum.split(",") if head_updates_centres(rate, args.shards > 1) else ["float32"]
            for storage in storages:
                full = _configuration(classes, rate, storage, full, args)


def _configuration(classes: int, rate: float, storage: str, full: dict | None, args) -> dict | None:
    """Runs (or skips) one configuration and prints its line; returns the full head's row once it has run."""
    from _report import emit

    from keras_sphereface.training.head_memory import available_memory, head_memory

    estimate = head_memory(classes, args.dim, args.batch, args.shards, rate, storage)
    sharding = f", sharded over {args.shards} logical CPUs" if args.shards > 1 else ""
    momentum = f", {storage} momentum" if storage != "float32" else ""
    row = {"what": f"ArcFace head step, {classes:,} classes, sample_rate {rate}{sharding}{momentum}",
           "classes": classes, "sample_rate": rate, "shards": args.shards, "centres_momentum": storage,
           "batch": args.batch, "dim": args.dim, "precision": "float32",
           "estimated_head_gb": round(estimate.total / 1e9, 2)}
    available = available_memory()
    if available is not None and estimate.total * args.shards > available:
        row["skipped"] = (f"the estimate ({estimate.total / 1e9:.1f} GB) exceeds the "
                          f"{available / 1e9:.1f} GB available")
    else:
        row.update(_run_worker(classes, rate, storage, args))
        if "ms_per_step" in row:
            row["images_per_s"] = round(args.batch / (row["ms_per_step"] / 1000), 1)
            if rate >= 1.0 and storage == "float32":
                full = row
            elif full is not None:
                row["time_vs_full"] = round(row["ms_per_step"] / full["ms_per_step"], 3)
                row["memory_vs_full"] = round(row["peak_rss_mb"] / full["peak_rss_mb"], 3)
    emit(row)
    return full


if __name__ == "__main__":
    main()
