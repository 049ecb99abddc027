"""ArcFace, CosFace, CombinedMargin, NormSoftmax and SphereFaceR against their closed forms."""

from __future__ import annotations

import math

import keras
import numpy as np
import pytest

from keras_sphereface.layers import ArcFace, CombinedMargin, CosFace, NormSoftmax, SphereFaceR
from tests.layers._backend import gradients, numpy

RNG = np.random.default_rng(11)
EPS = 1e-6


def _setup(head, dim=6, units=5, batch=8):
    x = RNG.normal(size=(batch, dim)).astype(np.float32)
    w = RNG.normal(size=(dim, units)).astype(np.float32)
    labels = RNG.integers(0, units, size=batch)
    head.build([(None, dim), (None,)])
    head.kernel.assign(w)
    x_unit = x / np.linalg.norm(x, axis=1, keepdims=True)
    w_unit = w / np.linalg.norm(w, axis=0, keepdims=True)
    cos = np.clip(x_unit.astype(np.float64) @ w_unit, -1 + EPS, 1 - EPS)
    return x, labels, cos


def _expected(cos, labels, s, target_fn):
    out = s * cos.copy()
    rows = np.arange(len(labels))
    out[rows, labels] = s * target_fn(cos[rows, labels])
    return out


def _arcface_closed_form(m):
    def target(c):
        theta = np.arccos(c)
        return np.where(theta + m < math.pi, np.cos(theta + m), c - m * math.sin(m))

    return target


HEADS = [
    (lambda: ArcFace(5), 64.0, _arcface_closed_form(0.5)),
    (lambda: ArcFace(5, s=30.0, m=0.2), 30.0, _arcface_closed_form(0.2)),
    (lambda: CosFace(5), 64.0, lambda c: c - 0.35),
    (lambda: CombinedMargin(5, s=32.0, m1=1.0, m2=0.3, m3=0.2), 32.0,
     lambda c: np.cos(np.arccos(c) + 0.3) - 0.2),
    (lambda: NormSoftmax(5, s=16.0), 16.0, lambda c: c),
    (lambda: SphereFaceR(5, s=30.0, m=1.5), 30.0,
     lambda c: (lambda k, t: (-1.0) ** k * np.cos(1.5 * t) - 2 * k)(np.floor(1.5 * np.arccos(c) / math.pi),
                                                                      np.arccos(c))),
]


@pytest.mark.parametrize(("make", "s", "target"), HEADS, ids=lambda v: getattr(v, "__name__", ""))
def test_training_logits_match_closed_form(make, s, target):
    head = make()
    x, labels, cos = _setup(head)
    got = numpy(head([x, labels], training=True))
    assert got.dtype == np.float32 and got.shape == (8, 5)
    np.testing.assert_allclose(got, _expected(cos, labels, s, target), rtol=1e-4, atol=2e-4 * s)


@pytest.mark.parametrize(("make", "s", "target"), HEADS, ids=lambda v: getattr(v, "__name__", ""))
def test_inference_logits_are_margin_free(make, s, target):
    head = make()
    x, labels, cos = _setup(head)
    for out in (head([x, labels], training=False), head([x]), head(x)):
        np.testing.assert_allclose(numpy(out), s * cos, rtol=1e-4, atol=1e-4 * s)


def test_arcface_near_pi_uses_the_fallback_and_stays_monotonic():
    head = ArcFace(2, s=1.0, m=0.5)
    head.build([(None, 2), (None,)])
    head.kernel.assign(np.array([[1.0, 0.0], [0.0, 1.0]], "float32"))
    angles = np.linspace(0.0, math.pi, 721)
    x = np.stack([np.cos(angles), np.sin(angles)], axis=1).astype(np.float32)
    logits = numpy(head([x, np.zeros(len(angles), "int32")], training=True))[:, 0]
    assert np.all(np.diff(logits) <= 1e-5)
    c = np.clip(np.cos(angles), -1 + EPS, 1 - EPS)
    beyond = angles + 0.5 >= math.pi + 1e-3
    np.testing.assert_allclose(logits[beyond], c[beyond] - 0.5 * math.sin(0.5), atol=1e-5)


def test_arcface_easy_margin():
    head = ArcFace(5, s=10.0, m=0.4, easy_margin=True)
    x, labels, cos = _setup(head)

    def target(c):
        return np.where(c > 0, np.cos(np.arccos(c) + 0.4), c)

    np.testing.assert_allclose(numpy(head([x, labels], training=True)),
                               _expected(cos, labels, 10.0, target), rtol=1e-4, atol=2e-3)


def test_sphereface_r_gradient_is_that_of_the_cosine():
    head = SphereFaceR(5, s=30.0, m=1.5)
    cos = np.linspace(-0.9, 0.9, 7)
    (grad,) = gradients(head.target_logit, cos)
    np.testing.assert_allclose(grad, np.ones_like(cos), atol=1e-6)


@pytest.mark.parametrize("head_class", [ArcFace, CosFace, CombinedMargin, NormSoftmax, SphereFaceR])
def test_gradients_finite_at_cosine_plus_minus_one_and_zero_row(head_class):
    head = head_class(3)
    head.build([(None, 3), (None,)])
    w = np.eye(3, dtype=np.float32)
    head.kernel.assign(w)
    x = np.array([[2.0, 0.0, 0.0], [0.0, -1.0, 0.0], [0.0, 0.0, 0.0]], np.float32)
    labels = np.array([0, 1, 2])

    def fn(a, b):
        embeddings, kernel = keras.ops.cast(a, "float32"), keras.ops.cast(b, "float32")
        return head.margin_logits(embeddings, kernel, labels[:, None])

    dx, dw = gradients(fn, x, w)
    assert np.all(np.isfinite(dx)) and np.all(np.isfinite(dw))
    assert np.all(np.isfinite(numpy(head([x, labels], training=True))))


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda: ArcFace(10, s=-1.0), "`s` must be a positive number. Received: s=-1.0"),
        (lambda: ArcFace(10, m=-0.1), "`m` must be a number >= 0. Received: m=-0.1"),
        (lambda: ArcFace(10, m=4.0), "smaller than pi.*Received: m=4.0"),
        (lambda: CosFace(10, s=0), "Received: s=0"),
        (lambda: CosFace(10, m=-1), "Received: m=-1"),
        (lambda: CombinedMargin(10, m1=0.0), "Received: m1=0.0"),
        (lambda: NormSoftmax(10, s="big"), "Received: s='big'"),
        (lambda: SphereFaceR(10, m=0.5), "`m` must be >= 1. Received: m=0.5"),
        (lambda: CosFace(-3), "`units` must be a positive integer. Received: units=-3"),
    ],
)
def test_bad_arguments(make, message):
    with pytest.raises(ValueError, match=message):
        make()


def test_bad_inputs():
    head = CosFace(5)
    x, labels, _ = _setup(head)
    with pytest.raises(ValueError, match="Received: a label of 5"):
        head([x, np.full(8, 5)], training=True)
    with pytest.raises(ValueError, match="Received: a label of -2"):
        head([x, np.full(8, -2)], training=True)
    with pytest.raises(ValueError, match=r"embedding_dim=6.*Received: embeddings shape=\(8, 4\)"):
        head([x[:, :4], labels], training=True)
    with pytest.raises(ValueError, match="called as head"):
        head([x, labels, labels], training=True)
