"""The centres' momentum in 8 bits: the row codes, SGD against float32, the memory, the refusals.

A Partial FC run with int8 momentum that resumes exactly: tests/training/test_partial_fc.py.
"""

from __future__ import annotations

import numpy as np
import pytest
import tensorflow as tf

from keras_sphereface.layers import ArcFace
from keras_sphereface.training.centre_momentum import CentresMomentum, encode_int8, momentum_bytes
from keras_sphereface.training.head_memory import check_head_fits, head_memory
from keras_sphereface.training.partial_fc import SampledCentres, rows_sgd

RNG = np.random.default_rng(11)
UNITS, DIM = 40, 16


def test_int8_codes_keep_each_value_within_half_a_step_of_its_row():
    velocity = (RNG.normal(size=(6, DIM)) * np.array([1e-6, 1e-3, 1, 30, 1, 1])[:, None]).astype(np.float32)
    velocity[4] = 0.0  # a row never updated
    velocity[5, 3] = -7.5  # one large value: it sets the row's step
    codes, scales = encode_int8(tf.constant(velocity))
    assert codes.dtype == tf.int8 and int(tf.reduce_max(tf.abs(tf.cast(codes, tf.int32)))) == 127
    np.testing.assert_allclose(scales.numpy(), np.abs(velocity).max(axis=1), rtol=1e-7)
    storage = CentresMomentum((6, DIM), "int8")
    storage.scatter(None, tf.constant(velocity))
    decoded = storage.gather(None).numpy()
    bound = np.abs(velocity).max(axis=1, keepdims=True) / 254 * (1 + 1e-6)
    assert np.all(np.abs(decoded - velocity) <= bound)
    np.testing.assert_array_equal(decoded[4], 0.0)
    assert decoded[5, 3] == pytest.approx(-7.5, rel=1e-6)
    held = storage.codes.numpy().nbytes + storage.scales.numpy().nbytes
    assert held == momentum_bytes(6, DIM, "int8") == 6 * (DIM + 4)
    assert CentresMomentum((6, DIM)).values.numpy().nbytes == momentum_bytes(6, DIM, "float32")


def test_int8_momentum_trains_the_sampled_rows_as_float32_does_and_leaves_the_others():
    """40 sampled SGD steps on the same gradients: int8 momentum ends within 1% of the rows' movement."""
    kernel = RNG.normal(size=(UNITS, DIM)).astype(np.float32)
    runs = {}
    for storage in ("float32", "int8"):
        head = ArcFace(UNITS, s=16.0, m=0.3, classes_first=True)
        head.build([(None, DIM), (None, 1)])
        head.kernel.assign(kernel)
        runs[storage] = SampledCentres(head, 10, seed=0, momentum_storage=storage)
    steps = np.random.default_rng(5)
    for _ in range(40):
        index = tf.constant(np.sort(steps.choice(UNITS, 10, replace=False)).astype(np.int32))
        grads = tf.constant(steps.normal(size=(10, DIM)).astype(np.float32))
        for centres in runs.values():
            centres.apply_sgd(index, centres.gather(index), grads, tf.constant(0.05), momentum=0.9,
                              weight_decay=5e-4)
    moved = np.abs(runs["float32"].rows.numpy() - kernel).max()
    gap = np.abs(runs["int8"].rows.numpy() - runs["float32"].rows.numpy()).max()
    assert moved > 0.3 and gap < 0.01 * moved, (moved, gap)
    # One more step: the rows not drawn keep their codes and scales bit for bit.
    int8 = runs["int8"]
    codes, scales = int8.momentum.codes.numpy(), int8.momentum.scales.numpy()
    int8.apply_sgd(index, int8.gather(index), grads, tf.constant(0.0), momentum=0.9)
    others = np.setdiff1d(np.arange(UNITS), index.numpy())
    np.testing.assert_array_equal(int8.momentum.codes.numpy()[others], codes[others])
    np.testing.assert_array_equal(int8.momentum.scales.numpy()[others], scales[others])
    assert not np.array_equal(int8.momentum.scales.numpy()[index.numpy()], scales[index.numpy()])


def test_rows_sgd_on_every_row_with_int8_momentum():
    """The sharded head at rate 1.0 updates all rows at once (`index=None`)."""
    rows = tf.Variable(RNG.normal(size=(UNITS, DIM)).astype(np.float32))
    velocity = CentresMomentum((UNITS, DIM), "int8")
    grads = tf.constant(RNG.normal(size=(UNITS, DIM)).astype(np.float32))
    before = rows.numpy()
    rows_sgd(rows, velocity, None, rows.read_value(), grads, tf.constant(0.1), 0.9)
    np.testing.assert_allclose(rows.numpy(), before - 0.1 * grads.numpy(), atol=1e-6)
    stored = velocity.gather(None).numpy()
    assert np.all(np.abs(stored + 0.1 * grads.numpy()) <= 0.1 * np.abs(grads.numpy()).max(1, keepdims=True) / 250)


def test_head_memory_counts_a_byte_per_value_and_an_int8_remedy_is_named():
    float32 = head_memory(1_000_000, 512, 64, sample_rate=0.1)
    int8 = head_memory(1_000_000, 512, 64, sample_rate=0.1, centres_momentum="int8")
    assert int8.optimizer_slots == 1_000_000 * (512 + 4) and int8.centres == float32.centres
    available = int8.total + 1
    with pytest.raises(MemoryError, match="--centres-momentum int8"):
        check_head_fits(1_000_000, 512, 64, 1, 0.1, available)
    assert check_head_fits(1_000_000, 512, 64, 1, 0.1, available, "int8") == int8


def test_int8_momentum_is_refused_for_a_head_the_optimizer_updates(tiny):
    """The full replicated head's momentum is keras SGD's: int8 applies to Partial FC or sharded centres only."""
    from keras_sphereface.models.zoo import get_model_spec
    from keras_sphereface.training.head_memory import check_run_head

    spec = get_model_spec("sphere4")
    with pytest.raises(ValueError, match=r"centres_momentum 'int8' .*sample_rate below 1"):
        check_run_head(tiny(steps=2, centres_momentum="int8"), spec, 100, 1)
    assert "int8 momentum" in check_run_head(tiny(steps=2, centres_momentum="int8", sample_rate=0.5), spec, 100,
                                             1).describe()
    with pytest.raises(ValueError, match="centres_momentum"):
        tiny(steps=2, centres_momentum="int4").validate()
