"""Subprocess entry for the distribution tests (devices and TF_CONFIG must be set before TensorFlow starts).

    python -m tests.training._worker mirrored RECORDS OUT_DIR
        Two logical CPU devices: trains the same steps on one device and with MirroredStrategy,
        prints one JSON line (weight difference, the head's iteration, steps).
    python -m tests.training._worker multi-worker RECORDS OUT_DIR WEIGHTS_NPZ
        One worker of the cluster in TF_CONFIG: trains a few steps, saves its final weights.
    python -m tests.training._worker mirrored-edges RECORDS OUT_DIR GLOBAL_BATCH STEPS
        Two logical CPU devices, MirroredStrategy: tries a batch size that is not a multiple of
        the replicas, then trains STEPS steps recording every step's per-replica batches (sizes,
        labels, pass), the loss of every step and the labels of all records; prints one JSON line.
    python -m tests.training._worker multi-worker-steps RECORDS OUT_DIR WEIGHTS_NPZ STEPS [SHARDING]
        One worker of the cluster in TF_CONFIG: trains, or resumes, to STEPS steps (a checkpoint
        every 2), saves its final weights, prints one JSON line. SHARDING: the head_sharding.
    python -m tests.training._worker sharded RECORDS OUT_DIR
        Two logical CPU devices: the full head on one device against the head sharded over two
        MirroredStrategy replicas (sample rate 1.0, then a resumed run, a sampled one, and a
        resume with another layout); prints one JSON line.
    python -m tests.training._worker sharded-sample
        Two logical CPU devices: one Partial FC step of a sharded CosFace head on fixed inputs;
        prints the sample, the loss and the centres.
    python -m tests.training._worker multi-worker-edges RECORDS OUT_DIR WEIGHTS_NPZ GLOBAL_BATCH STEPS
        One worker of the cluster in TF_CONFIG: trains STEPS steps recording the same figures for
        its own batches, saves its final weights, prints one JSON line.
"""

from __future__ import annotations

import json
import sys

import numpy as np


def _config(records: str, out: str, **overrides):
    from keras_sphereface.training import load_recipe
    from tests.training.conftest import TINY

    options = {**TINY, "tfrecords": records, "out": out, "deterministic": True, "checkpoint_every": 100, **overrides}
    return load_recipe("lfw-devtrain_sphere4_asoftmax", **options)


def _iteration(out: str) -> int:
    import tensorflow as tf

    from keras_sphereface.training import latest_complete_checkpoint

    path = latest_complete_checkpoint(f"{out}/checkpoints")
    keys = [name for name, _ in tf.train.list_variables(path) if name.endswith("iteration/.ATTRIBUTES/VARIABLE_VALUE")]
    return int(tf.train.load_checkpoint(path).get_tensor(keys[0]))


def mirrored(records: str, out: str) -> None:
    import tensorflow as tf

    cpu = tf.config.list_physical_devices("CPU")[0]
    tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
    from keras_sphereface.training import train

    steps = 4
    one = train(_config(records, f"{out}/one", strategy="one", steps=steps))
    two = train(_config(records, f"{out}/mirrored", strategy="mirrored", steps=steps))
    differences = [float(np.max(np.abs(np.asarray(a) - np.asarray(b))))
                   for a, b in zip(one.model.get_weights(), two.model.get_weights(), strict=True)]
    scale = max(float(np.max(np.abs(np.asarray(w)))) for w in one.model.get_weights())
    print(json.dumps({"replicas": len(tf.config.list_logical_devices("CPU")), "steps": steps,
                      "max_difference": max(differences), "weight_scale": scale,
                      "iteration_one": _iteration(f"{out}/one"), "iteration_mirrored": _iteration(f"{out}/mirrored"),
                      "step_mirrored": two.step, "loss_one": one.loss, "loss_mirrored": two.loss}))


def _centres(out: str) -> np.ndarray:
    """The head's `(classes, dim)` centres in the newest checkpoint of `out`: the kernel, or the shards in order."""
    import tensorflow as tf

    from keras_sphereface.training import latest_complete_checkpoint

    path = latest_complete_checkpoint(f"{out}/checkpoints")
    reader = tf.train.load_checkpoint(path)
    names = [name for name, _ in tf.train.list_variables(path)]
    shards = sorted((n for n in names if n.startswith("centres/") and n.endswith("VARIABLE_VALUE")),
                    key=lambda n: int(n.split("/")[1]))
    if shards:
        return np.concatenate([reader.get_tensor(n) for n in shards])
    shapes = reader.get_variable_to_shape_map()  # the full head's (dim, classes) kernel: TINY has 32-d, 8 classes
    (kernel,) = [n for n in names if "_trainable_variables" in n and shapes[n] == [32, 8]]
    return reader.get_tensor(kernel).T


def _initial_centres(shape) -> np.ndarray:
    from keras_sphereface.training.centre_init import CentresInitializer
    from tests.training.conftest import TINY

    return np.asarray(CentresInitializer(TINY["seed"], classes_first=True)(shape))


def sharded(records: str, out: str) -> None:
    import tensorflow as tf

    cpu = tf.config.list_physical_devices("CPU")[0]
    tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
    from keras_sphereface.training import train

    steps, losses = 4, {}
    fast = {"lr": 0.5, "warmup_fraction": 0.0}  # centres that move well clear of rounding in 4 steps

    from keras_sphereface.training import TrainCallback

    class Recorder(TrainCallback):
        def __init__(self, key):
            self.key = key
            losses[key] = []

        def on_step_end(self, step, loss):
            losses[self.key].append(loss)

    def run(key, **options):
        return train(_config(records, f"{out}/{key}", steps=steps, **fast, **options), callbacks=[Recorder(key)])

    one = run("one", strategy="one")
    two = run("sharded", strategy="mirrored", head_sharding="sharded")
    straight_centres = _centres(f"{out}/sharded")
    train(_config(records, f"{out}/resumed", steps=2, strategy="mirrored", head_sharding="sharded",
                  checkpoint_every=2, **fast))
    resumed = run("resumed", strategy="mirrored", head_sharding="sharded")
    sampled = run("sampled", strategy="mirrored", sample_rate=0.5)
    refused = None
    try:
        train(_config(records, f"{out}/sharded", steps=steps + 1, strategy="one", **fast))
    except ValueError as error:
        refused = str(error)

    def difference(a, b):
        return max(float(np.max(np.abs(np.asarray(x) - np.asarray(y))))
                   for x, y in zip(a.model.get_weights(), b.model.get_weights(), strict=True))

    print(json.dumps({
        "steps": steps, "losses": losses, "step_sharded": two.step,
        "backbone_difference": difference(one, two),
        "backbone_scale": max(float(np.max(np.abs(np.asarray(w)))) for w in one.model.get_weights()),
        "centres_difference": float(np.max(np.abs(_centres(f"{out}/one") - straight_centres))),
        "centres_scale": float(np.max(np.abs(straight_centres))),
        "centres_moved": float(np.max(np.abs(straight_centres - _initial_centres(straight_centres.shape)))),
        "iteration_one": _iteration(f"{out}/one"), "iteration_sharded": _iteration(f"{out}/sharded"),
        "resumed_from": resumed.resumed_from, "resumed_difference": difference(two, resumed),
        "resumed_centres_difference": float(np.max(np.abs(_centres(f"{out}/resumed") - straight_centres))),
        "sampled_step": sampled.step, "sampled_loss": sampled.loss,
        "sampled_finite": all(bool(np.all(np.isfinite(w))) for w in sampled.model.get_weights()),
        "refused": refused}))


def sharded_sample() -> None:
    """One Partial FC step of a CosFace head sharded over two replicas; prints its sample, loss and centres."""
    import tensorflow as tf

    cpu = tf.config.list_physical_devices("CPU")[0]
    tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
    from keras_sphereface.layers import CosFace
    from keras_sphereface.training.distribute import make_placement
    from keras_sphereface.training.sharded_head import ShardedCentres

    classes, dim, batch = 40, 16, 8
    placement = make_placement("mirrored")
    with placement.strategy.scope():
        head = CosFace(classes, s=8.0, m=0.35, external_centres=True)
        head.build((None, dim))
    centres = ShardedCentres(head, classes, dim, placement, 0.25, batch, seed=3)
    generator = np.random.default_rng(0)
    embeddings = generator.normal(size=(batch, dim)).astype("float32")
    labels = np.array([1, 1, 5, 19, 20, 21, 33, 39], dtype="int32")  # both shards, a repeated class

    @tf.function
    def step():
        values = placement.strategy.experimental_distribute_values_from_function(
            lambda context: (embeddings[4 * context.replica_id_in_sync_group:][:4],
                             labels[4 * context.replica_id_in_sync_group:][:4]))

        def replica(images_labels):
            part = centres.step(images_labels[0], images_labels[1], tf.constant(5, tf.int64), tf.constant(1.0))
            return part.cross_entropy, part.correct, part.index

        return placement.strategy.run(replica, args=(values,))

    cross_entropy, correct, index = (placement.strategy.experimental_local_results(v) for v in step())
    starts = [start for start, _ in centres.bounds]
    print(json.dumps({"loss": float(sum(np.asarray(v) for v in cross_entropy)),
                      "correct": float(sum(np.asarray(v) for v in correct)),
                      "sampled": [int(i) + start for i_s, start in zip(index, starts, strict=True)
                                  for i in np.asarray(i_s)],
                      "centres": np.concatenate([np.asarray(v) for v in centres.rows]).tolist(),
                      "embeddings": embeddings.tolist(), "labels": labels.tolist(), "s": 8.0, "m": 0.35}))


def multi_worker(records: str, out: str, weights_file: str) -> None:
    from keras_sphereface.training import train

    result = train(_config(records, out, strategy="multi-worker", steps=3))
    np.savez(weights_file, *[np.asarray(w) for w in result.model.get_weights()])
    print(json.dumps({"step": result.step, "loss": result.loss}))


def _step_recorder():
    """A `TrainCallback` that keeps every step's per-replica batches (sizes, labels, pass) and loss.

    Defined on call: importing keras_sphereface.training starts TensorFlow, which must wait for the
    devices and TF_CONFIG to be set.
    """
    from keras_sphereface.training import TrainCallback

    class StepRecorder(TrainCallback):
        def __init__(self):
            self.batches, self.losses, self.epoch = [], [], 0

        def on_pass_start(self, epoch):
            self.epoch = epoch

        def on_batches(self, step, batches):
            self.batches.append({
                "epoch": self.epoch,
                "sizes": [int(labels.shape[0]) for _, labels in batches],
                "labels": [int(v) for _, labels in batches for v in np.asarray(labels)],
                "finite": all(bool(np.all(np.isfinite(np.asarray(images)))) for images, _ in batches),
            })

        def on_step_end(self, step, loss):
            self.losses.append(loss)

    return StepRecorder()


def _all_labels(records) -> list[int]:
    from keras_sphereface.data.dataset import tfrecord_dataset

    dataset = tfrecord_dataset(records, 1000, training=False, image_size=(32, 32), align="landmarks")
    return [int(v) for _, labels in dataset for v in np.asarray(labels)]


def mirrored_edges(records: str, out: str, global_batch: str, steps: str) -> None:
    import tensorflow as tf

    cpu = tf.config.list_physical_devices("CPU")[0]
    tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
    from keras_sphereface.training import read_records_info, train

    recorder = _step_recorder()
    refused = None
    try:
        train(_config(records, f"{out}/odd", strategy="mirrored", batch_size=int(global_batch) + 1, steps=1),
              callbacks=[recorder])
    except ValueError as error:
        refused = str(error)
    result = train(_config(records, f"{out}/run", strategy="mirrored", batch_size=int(global_batch),
                           steps=int(steps)), callbacks=[recorder])
    print(json.dumps({"refused": refused, "step": result.step, "epoch": result.epoch, "batches": recorder.batches,
                      "losses": recorder.losses, "all_labels": _all_labels(records),
                      "num_examples": read_records_info(records).num_examples,
                      "weights_finite": all(bool(np.all(np.isfinite(w))) for w in result.model.get_weights())}))


def multi_worker_edges(records: str, out: str, weights_file: str, global_batch: str, steps: str) -> None:
    import glob
    import os

    from keras_sphereface.training import train

    task = json.loads(os.environ["TF_CONFIG"])
    workers = len(task["cluster"]["worker"])
    # tf.data's shard: this worker reads every `workers`-th file of the sorted list, from its index.
    own_files = sorted(glob.glob(records))[task["task"]["index"]::workers]
    recorder = _step_recorder()
    result = train(_config(records, out, strategy="multi-worker", batch_size=int(global_batch), steps=int(steps)),
                   callbacks=[recorder])
    np.savez(weights_file, *[np.asarray(w) for w in result.model.get_weights()])
    print(json.dumps({"step": result.step, "batches": recorder.batches, "losses": recorder.losses,
                      "own_labels": _all_labels(own_files), "files": [os.path.basename(f) for f in own_files]}))


def multi_worker_steps(records: str, out: str, weights_file: str, steps: str, sharding: str = "auto") -> None:
    """Trains (or resumes) to STEPS global steps with a checkpoint every 2; saves weights, prints the run.

    SHARDING (optional) is the run's head_sharding; given, the learning rate is raised so that the
    centres move well clear of rounding.
    """
    from keras_sphereface.training import train

    fast = {} if sharding == "auto" else {"lr": 0.5, "warmup_fraction": 0.0, "head_sharding": sharding}
    result = train(_config(records, out, strategy="multi-worker", steps=int(steps), checkpoint_every=2, **fast))
    np.savez(weights_file, *[np.asarray(w) for w in result.model.get_weights()])
    print(json.dumps({"step": result.step, "resumed_from": result.resumed_from, "loss": result.loss}))


if __name__ == "__main__":
    mode, *arguments = sys.argv[1:]
    modes = {"mirrored": mirrored, "sharded": sharded, "sharded-sample": sharded_sample, "multi-worker": multi_worker,
             "mirrored-edges": mirrored_edges, "multi-worker-edges": multi_worker_edges,
             "multi-worker-steps": multi_worker_steps}
    modes[mode](*arguments)
