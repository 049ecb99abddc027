"""Partial FC's centres in TensorFlow: the sampled-row SGD update, per-step samples, the memory estimate."""

from __future__ import annotations

import keras
import numpy as np
import pytest
import tensorflow as tf

from keras_sphereface.layers import ArcFace
from keras_sphereface.layers.partial_fc import sampled_margin_logits
from keras_sphereface.training.centre_momentum import CentresMomentum
from keras_sphereface.training.head_memory import check_head_fits, head_memory
from keras_sphereface.training.partial_fc import SampledCentres, rows_sgd

RNG = np.random.default_rng(3)
UNITS, DIM, BATCH = 50, 8, 12


def _head(kernel, classes_first=True):
    """An ArcFace head with `kernel` `(DIM, UNITS)`: as rows `(UNITS, DIM)` for Partial FC, else as given."""
    head = ArcFace(UNITS, s=16.0, m=0.3, classes_first=classes_first)
    head.build([(None, DIM), (None, 1)])
    head.kernel.assign(kernel.T if classes_first else kernel)
    return head


def _cross_entropy(labels, logits):
    return tf.reduce_mean(tf.nn.sparse_softmax_cross_entropy_with_logits(tf.reshape(labels, (-1,)), logits))


def test_sampling_every_class_trains_as_the_full_head_with_keras_sgd():
    """num_sampled = classes: weights within 1e-5 and the same losses as keras SGD on the kernel, 6 steps."""
    kernel = RNG.normal(size=(DIM, UNITS)).astype(np.float32)
    x = tf.constant(RNG.normal(size=(BATCH, DIM)).astype(np.float32))
    full, sampled = _head(kernel, classes_first=False), _head(kernel)
    optimizer = keras.optimizers.SGD(learning_rate=0.1, momentum=0.9)
    optimizer.build([full.kernel])
    centres = SampledCentres(sampled, UNITS, seed=0)
    for step in range(6):
        labels = tf.constant(RNG.integers(0, UNITS, size=(BATCH, 1)).astype(np.int32))
        with tf.GradientTape() as tape:
            full_loss = _cross_entropy(labels, full([x, labels], training=True))
        optimizer.apply_gradients([(tape.gradient(full_loss, full.kernel), full.kernel)])
        index, sampled_labels = centres.sample(labels, tf.constant(step))
        np.testing.assert_array_equal(index.numpy(), np.arange(UNITS))
        rows = centres.gather(index)
        with tf.GradientTape() as tape:
            tape.watch(rows)
            loss = _cross_entropy(sampled_labels, sampled_margin_logits(sampled, x, rows, sampled_labels))
        centres.apply_sgd(index, rows, tape.gradient(loss, rows), tf.constant(0.1), momentum=0.9)
        np.testing.assert_allclose(loss.numpy(), full_loss.numpy(), rtol=1e-6)
    np.testing.assert_allclose(sampled.kernel.numpy().T, full.kernel.numpy(), atol=1e-5)
    # The two layouts give the same logits.
    np.testing.assert_allclose(sampled(x).numpy(), full(x).numpy(), atol=1e-4)


def test_only_the_sampled_rows_and_their_momentum_move():
    head = _head(RNG.normal(size=(DIM, UNITS)).astype(np.float32))
    centres = SampledCentres(head, 20, seed=7)
    centres.momentum.values.assign(tf.fill(centres.momentum.values.shape, 0.5))
    before = centres.rows.numpy()
    labels = tf.constant(RNG.integers(0, UNITS, size=(BATCH, 1)).astype(np.int32))
    index, _ = centres.sample(labels, tf.constant(3))
    rows = centres.gather(index)
    centres.apply_sgd(index, rows, tf.ones_like(rows), tf.constant(0.1), momentum=0.9, weight_decay=5e-4)
    others = np.setdiff1d(np.arange(UNITS), index.numpy())
    np.testing.assert_array_equal(centres.rows.numpy()[others], before[others])
    np.testing.assert_array_equal(centres.momentum.values.numpy()[others], 0.5)
    expected_velocity = 0.9 * 0.5 - 0.1 * (1.0 + 5e-4 * before[index.numpy()])
    np.testing.assert_allclose(centres.momentum.values.numpy()[index.numpy()], expected_velocity, rtol=1e-6)
    np.testing.assert_allclose(centres.rows.numpy()[index.numpy()], before[index.numpy()] + expected_velocity,
                               rtol=1e-5)


@pytest.mark.parametrize("nesterov", [False, True])
def test_every_row_with_float32_momentum_updates_as_keras_sgd(nesterov):
    """`index=None` (a whole shard at rate 1.0) runs the fused kernel: keras SGD's weights, 3 steps, weight decay."""
    start = RNG.normal(size=(UNITS, DIM)).astype(np.float32)
    rows, reference = tf.Variable(start), keras.Variable(start)
    velocity = CentresMomentum((UNITS, DIM), "float32")
    optimizer = keras.optimizers.SGD(learning_rate=0.1, momentum=0.9, nesterov=nesterov)
    optimizer.build([reference])
    for _ in range(3):
        grads = tf.constant(RNG.normal(size=(UNITS, DIM)).astype(np.float32))
        decayed = grads + 5e-4 * tf.convert_to_tensor(reference)
        optimizer.apply_gradients([(decayed, reference)])
        rows_sgd(rows, velocity, None, rows.read_value(), grads, tf.constant(0.1), 0.9, weight_decay=5e-4,
                 nesterov=nesterov)
    np.testing.assert_allclose(rows.numpy(), reference.numpy(), atol=1e-6)


def test_a_step_draws_the_same_sample_again_and_another_step_a_new_one():
    centres = SampledCentres(_head(RNG.normal(size=(DIM, UNITS)).astype(np.float32)), 20, seed=1)
    labels = tf.constant(np.arange(BATCH, dtype=np.int32)[:, None])
    first = centres.sample(labels, tf.constant(5))[0].numpy()
    np.testing.assert_array_equal(centres.sample(labels, tf.constant(5))[0].numpy(), first)
    assert not np.array_equal(centres.sample(labels, tf.constant(6))[0].numpy(), first)
    assert set(range(BATCH)) <= set(first.tolist())


def test_head_memory_counts_the_shapes():
    full = head_memory(1_000_000, 512, 64)
    assert full.centres == full.optimizer_slots == full.gradient / 4 == 512 * 1_000_000 * 4
    assert full.logits == 4 * 64 * 1_000_000 * 4
    partial = head_memory(1_000_000, 512, 64, sample_rate=0.1)
    assert partial.gradient == 3 * 100_000 * 512 * 4 and partial.logits == 4 * 64 * 100_000 * 4
    assert partial.centres == full.centres and partial.total < 0.5 * full.total
    assert "head per replica" in partial.describe() and "GB" in partial.describe()


def test_a_head_that_cannot_fit_is_refused_naming_a_rate_that_would():
    available = head_memory(2_000_000, 512, 64, sample_rate=0.1).total + 1
    with pytest.raises(MemoryError, match=r"2,000,000 classes.*--sample-rate 0\.1"):
        check_head_fits(2_000_000, 512, 64, 1, 1.0, available)
    assert check_head_fits(2_000_000, 512, 64, 1, 0.1, available).total < available
    assert check_head_fits(2_000_000, 512, 64, 1, 1.0, None).total > available
    # Memory for the full head on 4 replicas' shards: the refusal also names that.
    available = head_memory(2_000_000, 512, 64, replicas=4).total + 1
    with pytest.raises(MemoryError, match=r"sharded over 4 replicas \(--head-sharding sharded\)"):
        check_head_fits(2_000_000, 512, 64, 1, 1.0, available)


@pytest.mark.tf_backend
@pytest.mark.parametrize("storage", ["float32", "int8"])
def test_a_partial_fc_run_trains_and_resumes_exactly(tiny, tmp_path, capsys, storage):
    """sample_rate 0.5 on 8 classes at batch 4: finite, and 5 + 7 steps end with the weights of 12 straight."""
    from keras_sphereface.training import train

    options = {"batch_size": 4, "sample_rate": 0.5, "deterministic": True, "checkpoint_every": 100, "lr": 0.01,
               "centres_momentum": storage}
    straight = train(tiny(steps=12, out=str(tmp_path / "straight"), **options))
    started = capsys.readouterr().out
    assert "Margin head: head per replica" in started and "Partial FC, sample_rate 0.5" in started
    assert ("int8 momentum" in started) == (storage == "int8")
    train(tiny(steps=5, out=str(tmp_path / "resumed"), **options))
    resumed = train(tiny(steps=12, out=str(tmp_path / "resumed"), **options))
    assert resumed.resumed_from == 5 and np.isfinite(resumed.loss)
    for a, b in zip(straight.model.get_weights(), resumed.model.get_weights(), strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
    # The checkpoint holds the head's (classes, dim) rows and their momentum: float32, or int8 codes and row scales.
    reader = tf.train.load_checkpoint(str(tmp_path / "resumed" / "checkpoints" / "ckpt-12"))
    shapes, dtypes = reader.get_variable_to_shape_map(), reader.get_variable_to_dtype_map()
    if storage == "float32":
        assert shapes["centres_momentum/.ATTRIBUTES/VARIABLE_VALUE"] == [8, 32]
    else:
        assert shapes["centres_momentum/codes/.ATTRIBUTES/VARIABLE_VALUE"] == [8, 32]
        assert dtypes["centres_momentum/codes/.ATTRIBUTES/VARIABLE_VALUE"] == tf.int8
        assert shapes["centres_momentum/scales/.ATTRIBUTES/VARIABLE_VALUE"] == [8]
    assert [n for n, shape in shapes.items() if shape == [8, 32] and n.startswith("model/")], shapes
    # Resumed with the other momentum storage, or as a full head: refused, saying how to resume.
    other = "int8" if storage == "float32" else "float32"
    with pytest.raises(ValueError, match=rf"momentum as {storage}; this run stores it as {other}.*"
                                         rf"--centres-momentum {storage}"):
        train(tiny(steps=14, out=str(tmp_path / "resumed"), **{**options, "centres_momentum": other}))
    if storage == "float32":
        with pytest.raises(ValueError, match=r"does not fit this run .*sample_rate.*--no-resume"):
            train(tiny(steps=14, out=str(tmp_path / "resumed"), **{**options, "sample_rate": 1.0}))


def test_partial_fc_needs_a_classes_first_head():
    with pytest.raises(ValueError, match="classes_first=True"):
        SampledCentres(_head(RNG.normal(size=(DIM, UNITS)).astype(np.float32), classes_first=False), 20, seed=0)


def test_bad_sample_rates_and_replicated_sampling_are_refused_and_sharding_halves_the_head(tiny):
    from keras_sphereface.models.zoo import get_model_spec
    from keras_sphereface.training.head_memory import check_run_head

    spec = get_model_spec("sphere4")
    for bad in (0, 1.5, -1, "0.1"):
        with pytest.raises(ValueError, match="sample_rate"):
            tiny(steps=2, sample_rate=bad).validate()
    with pytest.raises(ValueError, match="head_sharding"):
        tiny(steps=2, head_sharding="split").validate()
    with pytest.raises(ValueError, match="sample_rate < 1 .*'auto' or 'sharded'"):
        check_run_head(tiny(steps=2, sample_rate=0.3, head_sharding="replicated"), spec, 100, 2)
    with pytest.raises(ValueError, match="one class per replica"):
        check_run_head(tiny(steps=2, head_sharding="sharded"), spec, 3, 4)
    with pytest.raises(ValueError, match="remove kernel_initializer"):
        check_run_head(tiny(steps=2, head_sharding="sharded", head_options={"kernel_initializer": "zeros"}), spec,
                       100, 2)
    one = check_run_head(tiny(steps=2, sample_rate=0.3), spec, 100_000, 1)
    two = check_run_head(tiny(steps=2, sample_rate=0.3), spec, 100_000, 2)  # auto: Partial FC is sharded
    assert two.centres == one.centres // 2 and "sharded over 2 replicas" in two.describe()
    replicated = check_run_head(tiny(steps=2), spec, 100_000, 2)  # auto: the full head on every replica
    assert replicated.centres == 2 * two.centres and "replicated on 2 replicas" in replicated.describe()
