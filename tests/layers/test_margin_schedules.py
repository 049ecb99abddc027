"""Staged A-Softmax margins (`m_schedule`) and the margin warm-up of the normalized heads."""

from __future__ import annotations

import math

import keras
import numpy as np
import pytest
from keras import ops

from keras_sphereface.layers import ArcFace, CombinedMargin, CosFace, MarginInnerProduct, NormSoftmax
from keras_sphereface.layers.margin_functions import clamp_cosine
from keras_sphereface.layers.margin_inner_product import a_softmax_logits

RNG = np.random.default_rng(3)


def _data(units=11, dim=8, batch=6):
    x = RNG.normal(size=(batch, dim)).astype(np.float32)
    labels = RNG.integers(0, units, size=(batch, 1)).astype(np.int32)
    return x, labels


def _built(head, x, labels):
    head([x, labels], training=False)
    return ops.convert_to_numpy(head.kernel)


@pytest.mark.parametrize(("schedule", "message"), [
    ([[0, 1], [0, 4]], "strictly increasing"),
    ([[10, 1], [5, 4]], "strictly increasing"),
    ([[0, 1], [100, 2]], "last stage of `m_schedule` must be the head's m=4"),
    ([[0, 5], [100, 4]], "margins in 1..4"),
    ([[-1, 1], [100, 4]], "steps must be >= 0"),
    ([[0, 1.5], [100, 4]], "integer pairs"),
    ([0, 4], "integer pairs"),
])
def test_bad_margin_schedules_are_refused_naming_the_option(schedule, message):
    with pytest.raises(ValueError, match=message) as caught:
        MarginInnerProduct(11, m=4, m_schedule=schedule)
    assert "m_schedule=" in str(caught.value)


def test_staged_margin_is_plain_softmax_then_a_softmax_with_lambda_carried_on():
    x, labels = _data()
    head = MarginInnerProduct(11, m=4, m_schedule=[[0, 1], [3, 4]])
    kernel = _built(head, x, labels)
    assert [head.margin_at(i) for i in (1, 2, 3, 9)] == [1, 1, 4, 4]
    plain = x @ (kernel / np.linalg.norm(kernel, axis=0, keepdims=True))
    for step in (1, 2):
        logits = ops.convert_to_numpy(head([x, labels], training=True))
        np.testing.assert_allclose(logits, plain, rtol=1e-5, atol=1e-5, err_msg=f"step {step}")
    for step in (3, 4):
        logits = ops.convert_to_numpy(head([x, labels], training=True))
        lam = head.lambda_at(step)  # the count runs on: lambda of step 3, not of step 1 again
        expected = ops.convert_to_numpy(a_softmax_logits(x, kernel, labels, lam, 4))
        np.testing.assert_allclose(logits, expected, rtol=1e-5, atol=1e-5, err_msg=f"step {step}")
    assert int(ops.convert_to_numpy(head.iteration)) == 4
    restored = MarginInnerProduct.from_config(head.get_config())
    assert restored.m_schedule == [(0, 1), (3, 4)] and restored.initial_iteration == 4


@pytest.mark.parametrize(("make", "margin_at"), [
    (lambda **kw: ArcFace(11, s=16.0, m=0.5, **kw), lambda c, r: math.cos(math.acos(c) + 0.5 * r)),
    (lambda **kw: CosFace(11, s=16.0, m=0.35, **kw), lambda c, r: c - 0.35 * r),
    (lambda **kw: CombinedMargin(11, s=16.0, m1=1.2, m2=0.3, m3=0.2, **kw),
     lambda c, r: math.cos((1 + 0.2 * r) * math.acos(c) + 0.3 * r) - 0.2 * r),
])
def test_margin_warmup_rises_linearly_to_the_full_margin(make, margin_at):
    x, labels = _data()
    head = make(margin_warmup_steps=4)
    kernel = _built(head, x, labels)
    cos = ops.convert_to_numpy(clamp_cosine(ops.matmul(
        x / np.linalg.norm(x, axis=1, keepdims=True), kernel / np.linalg.norm(kernel, axis=0, keepdims=True))))
    rows = np.arange(len(x))
    for step in range(1, 7):
        logits = ops.convert_to_numpy(head([x, labels], training=True))
        ramp = min(1.0, step / 4)
        expected = [16.0 * margin_at(float(c), ramp) for c in cos[rows, labels[:, 0]]]
        np.testing.assert_allclose(logits[rows, labels[:, 0]], expected, rtol=1e-4, atol=1e-4,
                                   err_msg=f"step {step}")
    full = make()
    full([x, labels], training=False)
    full.kernel.assign(kernel)
    np.testing.assert_allclose(logits, ops.convert_to_numpy(full([x, labels], training=True)), rtol=1e-5, atol=1e-5)
    assert not hasattr(full, "iteration")  # no warm-up, no extra variable: checkpoints as before
    assert make(margin_warmup_steps=4).get_config()["margin_warmup_steps"] == 4


@pytest.mark.parametrize("steps", [-1, 2.5, True])
def test_bad_margin_warmup_is_refused(steps):
    with pytest.raises(ValueError, match="margin_warmup_steps"):
        CosFace(11, margin_warmup_steps=steps)
    with pytest.raises(ValueError, match="margin_warmup_steps"):
        NormSoftmax(11, margin_warmup_steps=steps)


def test_warmup_heads_save_and_load_with_their_counter(tmp_path):
    x, labels = _data()
    inputs = [keras.Input((8,)), keras.Input((1,), dtype="int32")]
    head = ArcFace(11, margin_warmup_steps=10, name="head")
    model = keras.Model(inputs, head(inputs))
    for _ in range(3):
        head([x, labels], training=True)
    model.save(tmp_path / "m.keras")
    loaded = keras.saving.load_model(tmp_path / "m.keras")
    assert int(ops.convert_to_numpy(loaded.get_layer("head").iteration)) == 3
