"""The scatter / folded-scale formulation of the heads against a straightforward one-hot one.

The layers add the margin to the target column with a scatter, fold `s` into the inverse column
norms and write the norms' gradient by hand (`docs/performance.md`). The reference below is the
plain formulation: normalize both sides, clamp, build the one-hot mask, scale by `s`, and lets
autodiff do the rest. Values and gradients (embeddings and kernel) must agree to float32 rounding.
"""

from __future__ import annotations

import keras
import numpy as np
import pytest
from keras import ops

from keras_sphereface.layers import (
    ArcFace,
    CombinedMargin,
    CosFace,
    MarginInnerProduct,
    NormSoftmax,
    SphereFaceR,
)
from keras_sphereface.layers.margin_functions import chebyshev_psi, clamp_cosine
from tests.layers._backend import gradients, numpy

RNG = np.random.default_rng(7)
HEADS = {
    "arcface": lambda units: ArcFace(units),
    "arcface_easy": lambda units: ArcFace(units, s=30.0, m=0.4, easy_margin=True),
    "cosface": lambda units: CosFace(units),
    "combined": lambda units: CombinedMargin(units),
    "norm_softmax": lambda units: NormSoftmax(units),
    "sphereface_r": lambda units: SphereFaceR(units, m=1.7),
}


def _unit(x, axis):
    return x / ops.sqrt(ops.maximum(ops.sum(ops.square(x), axis=axis, keepdims=True), 1e-12))


def _reference_normalized(head, x, w, labels):
    cos = clamp_cosine(ops.matmul(_unit(x, -1), _unit(w, 0)))
    one_hot = ops.one_hot(ops.reshape(labels, (-1,)), head.units, dtype=cos.dtype)
    target = ops.sum(cos * one_hot, axis=-1, keepdims=True)
    return head.s * (cos * (1.0 - one_hot) + one_hot * head.target_logit(target))


def _reference_a_softmax(m, lam, x, w, labels):
    inner = ops.matmul(x, _unit(w, 0))
    norm = ops.sqrt(ops.maximum(ops.sum(ops.square(x), axis=-1, keepdims=True), 1e-12))
    one_hot = ops.one_hot(ops.reshape(labels, (-1,)), w.shape[-1], dtype=inner.dtype)
    target_inner = ops.sum(inner * one_hot, axis=-1, keepdims=True)
    psi = chebyshev_psi(clamp_cosine(target_inner / norm), m)
    target = (lam * target_inner + norm * psi) / (1.0 + lam)
    return inner * (1.0 - one_hot) + one_hot * target


def _data(units=37, dim=16, batch=12):
    x = RNG.normal(size=(batch, dim)).astype(np.float32)
    w = RNG.normal(size=(dim, units)).astype(np.float32)
    # Cover the clamps: an embedding on a class weight, its opposite, a zero row, a zero column.
    x[0] = w[:, 3] * 2.0
    x[1] = -w[:, 5]
    x[2] = 0.0
    w[:, 7] = 0.0
    labels = RNG.integers(0, units, size=(batch, 1)).astype(np.int32)
    labels[0, 0], labels[1, 0], labels[3, 0] = 3, 5, 7
    return x, w, labels


def _weighted(fn):
    """`fn` times fixed random weights, so the gradient of the sum checks every column."""

    def weighted(x, w):
        out = fn(x, w)
        upstream = RNG_UPSTREAM.normal(size=tuple(out.shape)).astype(np.float32)
        return out * ops.convert_to_tensor(upstream)

    return weighted


RNG_UPSTREAM = np.random.default_rng(0)


def _compare(fn, reference, x, w, labels):
    got, want = numpy(fn(x, w)), numpy(reference(x, w))
    np.testing.assert_allclose(got[2:], want[2:], rtol=2e-6, atol=2e-5)
    # Rows 0 and 1 sit at cos = +-1 (clamped): arccos there turns one float32 rounding step of
    # the cosine (6e-8) into ~4e-5 of angle, so both formulations differ by up to ~s * 1e-4.
    np.testing.assert_allclose(got[:2], want[:2], rtol=2e-6, atol=1e-4 * float(np.max(np.abs(want))))
    global RNG_UPSTREAM
    RNG_UPSTREAM = np.random.default_rng(0)
    got = gradients(_weighted(fn), x, w)
    RNG_UPSTREAM = np.random.default_rng(0)
    want = gradients(_weighted(reference), x, w)
    for g, r in zip(got, want, strict=True):
        assert np.all(np.isfinite(g))
        # rtol: the zero row's gradient is ~1e5 (the 1e-12 norm clamp) and amplifies rounding.
        np.testing.assert_allclose(g, r, rtol=1e-4, atol=2e-4)


@pytest.mark.parametrize("name", sorted(HEADS))
@pytest.mark.parametrize("training", [True, False])
def test_normalized_heads_match_one_hot_reference(name, training):
    x, w, labels = _data()
    head = HEADS[name](w.shape[1])
    head.build([(None, x.shape[1]), (None, 1)])

    def fn(a, b):
        if training:
            return head.margin_logits(ops.cast(a, "float32"), b, ops.convert_to_tensor(labels))
        return head.plain_logits(ops.cast(a, "float32"), b)

    def reference(a, b):
        if training:
            return _reference_normalized(head, a, b, ops.convert_to_tensor(labels))
        return head.s * clamp_cosine(ops.matmul(_unit(a, -1), _unit(b, 0)))

    _compare(fn, reference, x, w, labels)


@pytest.mark.parametrize("m", [2, 3, 4])
def test_a_softmax_matches_one_hot_reference(m):
    from keras_sphereface.layers import margin_inner_product as mip

    x, w, labels = _data()
    lam = np.float32(MarginInnerProduct(w.shape[1], m=m).lambda_at(1500))
    _compare(
        lambda a, b: mip.a_softmax_logits(a, b, ops.convert_to_tensor(labels), lam, m),
        lambda a, b: _reference_a_softmax(m, lam, a, b, ops.convert_to_tensor(labels)),
        x, w, labels,
    )


def test_layer_call_matches_reference_under_mixed_precision():
    x, w, labels = _data()
    previous = keras.config.dtype_policy()
    keras.config.set_dtype_policy("mixed_float16")
    try:
        head = ArcFace(w.shape[1])
        head.build([(None, x.shape[1]), (None, 1)])
    finally:
        keras.config.set_dtype_policy(previous)
    head.kernel.assign(w)
    out = numpy(head([x, labels], training=True))
    assert out.dtype == np.float32 and np.all(np.isfinite(out))
    want = numpy(_reference_normalized(head, x, w, ops.convert_to_tensor(labels)))
    np.testing.assert_allclose(out, want, rtol=2e-6, atol=2e-5)
