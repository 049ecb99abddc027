"""Partial FC's sampling and sampled logits against independent NumPy computations (any backend)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from keras_sphereface.layers import ArcFace, CosFace, MarginInnerProduct
from keras_sphereface.layers.partial_fc import sample_classes, sampled_count, sampled_margin_logits
from tests.layers._backend import numpy

RNG = np.random.default_rng(20)


def _sample(labels, units, num_sampled, seed=0):
    scores = np.random.default_rng(seed).random(units).astype(np.float32)
    index, sampled_labels = sample_classes(labels.astype(np.int32), scores, num_sampled)
    return numpy(index), numpy(sampled_labels)[:, 0], scores


def test_sample_holds_every_positive_sorted_and_remaps_labels():
    units, num_sampled = 1000, 100
    labels = RNG.integers(0, units, size=64)
    labels[:8] = labels[8]  # duplicates take one slot
    index, sampled_labels, scores = _sample(labels, units, num_sampled)
    assert index.shape == (num_sampled,) and np.all(np.diff(index) > 0)
    assert set(labels.tolist()) <= set(index.tolist())
    np.testing.assert_array_equal(index[sampled_labels], labels)
    # The negatives are the best-scoring non-positives: an independent top-k.
    negatives = np.setdiff1d(np.arange(units), labels)
    wanted = num_sampled - len(np.unique(labels))
    best = negatives[np.argsort(-scores[negatives], kind="stable")[:wanted]]
    np.testing.assert_array_equal(np.sort(np.concatenate([np.unique(labels), best])), index)


def test_the_sample_changes_with_the_scores():
    labels = RNG.integers(0, 500, size=16)
    first, _, _ = _sample(labels, 500, 50, seed=1)
    second, _, _ = _sample(labels, 500, 50, seed=2)
    assert not np.array_equal(first, second)


def test_sampled_count_keeps_room_for_every_positive():
    assert sampled_count(1_000_000, 0.1, 64) == 100_000
    assert sampled_count(100, 0.1, 64) == 64  # at least one per batch row
    assert sampled_count(50, 0.1, 64) == 50  # never more than the classes
    assert sampled_count(4038, 0.3, 64) == math.ceil(0.3 * 4038)
    for bad in (0, 1.5, -0.1, True, "0.1"):
        with pytest.raises(ValueError, match="sample_rate"):
            sampled_count(100, bad, 8)


def _numpy_arcface_loss(x, centres, labels, index, s, m):
    """Cross-entropy of ArcFace restricted to the classes of `index`, computed from scratch in float64."""
    x = x / np.linalg.norm(x, axis=1, keepdims=True)
    w = centres[index].astype(np.float64)
    w = w / np.linalg.norm(w, axis=1, keepdims=True)
    cos = np.clip(x @ w.T, -1 + 1e-6, 1 - 1e-6)
    target = np.searchsorted(index, labels)
    rows = np.arange(len(labels))
    theta = np.arccos(cos[rows, target])
    logits = s * cos
    logits[rows, target] = s * np.where(theta + m < math.pi, np.cos(theta + m), cos[rows, target] - m * math.sin(m))
    logits -= logits.max(axis=1, keepdims=True)
    log_softmax = logits - np.log(np.exp(logits).sum(axis=1, keepdims=True))
    return -log_softmax[rows, target].mean()


def test_sampled_arcface_loss_is_the_softmax_over_the_sampled_classes():
    units, dim, batch = 300, 16, 24
    head = ArcFace(units, s=32.0, m=0.5)
    head.build([(None, dim), (None, 1)])
    centres = RNG.normal(size=(units, dim)).astype(np.float32)
    x = RNG.normal(size=(batch, dim)).astype(np.float32)
    labels = RNG.integers(0, units, size=batch)
    index, sampled_labels, _ = _sample(labels, units, 60)
    logits = numpy(sampled_margin_logits(head, x, centres[index], sampled_labels[:, None].astype(np.int32)))
    assert logits.shape == (batch, 60) and logits.dtype == np.float32
    shifted = logits - logits.max(axis=1, keepdims=True)
    rows = np.arange(batch)
    loss = -(shifted[rows, sampled_labels] - np.log(np.exp(shifted).sum(axis=1))).mean()
    np.testing.assert_allclose(loss, _numpy_arcface_loss(x, centres, labels, index, 32.0, 0.5), rtol=1e-4)


@pytest.mark.parametrize("make_head", [lambda u: CosFace(u, s=30.0, m=0.35), lambda u: MarginInnerProduct(u, m=4)],
                         ids=["cosface", "a-softmax"])
def test_sampled_logits_are_the_full_heads_columns(make_head):
    """Every head: the sampled logits equal the full head's training logits at the sampled columns."""
    units, dim, batch = 120, 8, 16
    full, sampled = make_head(units), make_head(units)
    for head in (full, sampled):
        head.build([(None, dim), (None, 1)])
    kernel = RNG.normal(size=(dim, units)).astype(np.float32)
    full.kernel.assign(kernel)
    x = RNG.normal(size=(batch, dim)).astype(np.float32)
    labels = RNG.integers(0, units, size=batch)
    index, sampled_labels, _ = _sample(labels, units, 40)
    expected = numpy(full([x, labels[:, None].astype(np.int32)], training=True))[:, index]
    got = numpy(sampled_margin_logits(sampled, x, kernel.T[index], sampled_labels[:, None].astype(np.int32)))
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-4)
    if hasattr(full, "iteration"):  # A-Softmax: lambda advanced once in both
        assert int(numpy(sampled.iteration)) == int(numpy(full.iteration)) == 1


@pytest.mark.parametrize("make_head", [lambda u, **k: ArcFace(u, **k), lambda u, **k: MarginInnerProduct(u, m=4, **k)],
                         ids=["arcface", "a-softmax"])
def test_a_classes_first_head_gives_the_same_logits_and_round_trips(make_head):
    units, dim, batch = 30, 8, 6
    columns, rows = make_head(units), make_head(units, classes_first=True)
    for head in (columns, rows):
        head.build([(None, dim), (None, 1)])
    assert tuple(rows.kernel.shape) == (units, dim)
    kernel = RNG.normal(size=(dim, units)).astype(np.float32)
    columns.kernel.assign(kernel)
    rows.kernel.assign(kernel.T)
    x = RNG.normal(size=(batch, dim)).astype(np.float32)
    labels = RNG.integers(0, units, size=(batch, 1)).astype(np.int32)
    for training in (False, True):
        np.testing.assert_allclose(numpy(rows([x, labels], training=training)),
                                   numpy(columns([x, labels], training=training)), rtol=1e-5, atol=1e-4)
    assert type(rows).from_config(rows.get_config()).classes_first
