"""Under MirroredStrategy on two logical CPUs, `iteration` advances once per global step and the
logits equal those of one device. Runs in a subprocess: logical devices must be configured
before TensorFlow initializes them."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import pytest

SCRIPT = textwrap.dedent(
    """
    import json
    import tensorflow as tf

    cpu = tf.config.list_physical_devices("CPU")[0]
    tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
    import keras
    import numpy as np
    from keras_sphereface.layers import MarginInnerProduct

    def build():
        inputs = [keras.Input((6,)), keras.Input((), dtype="int32")]
        embeddings = keras.layers.Dense(6, name="embed")(inputs[0])
        head = MarginInnerProduct(4, m=4, name="head")
        model = keras.Model(inputs, head([embeddings, inputs[1]]))
        model.compile(optimizer=keras.optimizers.SGD(0.05),
                      loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
        return model, head

    rng = np.random.default_rng(0)
    x = rng.normal(size=(24, 6)).astype("float32")
    y = rng.integers(0, 4, size=24).astype("int32")
    strategy = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
    with strategy.scope():
        mirrored, mirrored_head = build()
    single, single_head = build()
    single.set_weights(mirrored.get_weights())

    mirrored.fit([x, y], y, batch_size=8, epochs=1, shuffle=False, verbose=0)
    after_fit = int(mirrored_head.iteration.numpy())
    single.fit([x, y], y, batch_size=8, epochs=1, shuffle=False, verbose=0)
    with strategy.scope():
        mirrored_train = mirrored([x, y], training=True).numpy()
    single_train = single([x, y], training=True).numpy()
    print(json.dumps({
        "replicas": strategy.num_replicas_in_sync,
        "iteration_after_fit": after_fit,
        "single_iteration_after_fit": int(single_head.iteration.numpy()) - 1,
        "max_abs_diff_inference": float(np.abs(mirrored.predict([x, y], verbose=0)
                                              - single.predict([x, y], verbose=0)).max()),
        "max_abs_diff_training": float(np.abs(mirrored_train - single_train).max()),
        "lambda": [float(mirrored_head.current_lambda), float(single_head.current_lambda)],
    }))
    """
)


@pytest.mark.slow
@pytest.mark.tf_backend
def test_mirrored_strategy_advances_once_per_global_step_and_matches_one_device(tmp_path):
    result = subprocess.run(
        [sys.executable, "-c", SCRIPT], capture_output=True, text=True, timeout=600, cwd=tmp_path
    )
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads(result.stdout.strip().splitlines()[-1])
    assert report["replicas"] == 2
    assert report["iteration_after_fit"] == 3  # 24 samples / global batch 8
    assert report["single_iteration_after_fit"] == 3
    assert report["lambda"][0] == report["lambda"][1]
    assert report["max_abs_diff_inference"] < 1e-5
    assert report["max_abs_diff_training"] < 1e-5
