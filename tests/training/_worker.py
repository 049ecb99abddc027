"""Subprocess entry for the distribution tests (devices and TF_CONFIG must be set before TensorFlow starts).

    python -m tests.training._worker mirrored RECORDS OUT_DIR
        Two logical CPU devices: trains the same steps on one device and with MirroredStrategy,
        prints one JSON line (weight difference, the head's iteration, steps).
    python -m tests.training._worker multi-worker RECORDS OUT_DIR WEIGHTS_NPZ
        One worker of the cluster in TF_CONFIG: trains a few steps, saves its final weights.
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


def multi_worker(records: str, out: str, weights_file: str) -> None:
    from keras_sphereface.training import train

    result = train(_config(records, out, strategy="multi-worker", steps=3))
    np.savez(weights_file, *[np.asarray(w) for w in result.model.get_weights()])
    print(json.dumps({"step": result.step, "loss": result.loss}))


if __name__ == "__main__":
    mode, *arguments = sys.argv[1:]
    {"mirrored": mirrored, "multi-worker": multi_worker}[mode](*arguments)
