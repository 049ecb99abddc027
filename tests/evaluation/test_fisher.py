"""The Angular Fisher Score against a direct loop over classes and samples."""

from __future__ import annotations

import numpy as np
import pytest

from keras_sphereface.evaluation.fisher import angular_fisher_score


def _cos(a, b):
    return float(np.dot(a, b) / (np.linalg.norm(a) * np.linalg.norm(b)))


def _afs_loop(x, labels):
    overall = x.mean(axis=0)
    within = between = 0.0
    for label in sorted(set(labels)):
        members = [x[j] for j in range(len(labels)) if labels[j] == label]
        mean = np.mean(members, axis=0)
        within += sum(1.0 - _cos(member, mean) for member in members)
        between += len(members) * (1.0 - _cos(mean, overall))
    return within / between


def test_matches_direct_loop():
    rng = np.random.default_rng(0)
    centers = rng.normal(size=(7, 16))
    labels = rng.integers(0, 7, size=120)
    x = centers[labels] + 0.7 * rng.normal(size=(120, 16))
    names = np.array([f"person_{k}" for k in labels])
    assert angular_fisher_score(x, names) == pytest.approx(_afs_loop(x, list(names)), rel=1e-10)
    unit = x / np.linalg.norm(x, axis=1, keepdims=True)
    assert angular_fisher_score(x, labels, normalize=True) == pytest.approx(_afs_loop(unit, list(labels)))


def test_compact_classes_score_lower():
    rng = np.random.default_rng(1)
    centers = rng.normal(size=(5, 8))
    labels = np.repeat(np.arange(5), 20)
    tight = centers[labels] + 0.05 * rng.normal(size=(100, 8))
    loose = centers[labels] + 1.0 * rng.normal(size=(100, 8))
    assert angular_fisher_score(tight, labels) < 0.1 * angular_fisher_score(loose, labels)


def test_bad_input():
    with pytest.raises(ValueError, match="at least two classes"):
        angular_fisher_score(np.ones((3, 2)), np.zeros(3))
    with pytest.raises(ValueError, match="Received: embeddings.shape=\\(3, 2\\), labels.shape=\\(2,\\)"):
        angular_fisher_score(np.ones((3, 2)), np.zeros(2))
