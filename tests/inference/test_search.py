"""Exact blocked top-k search against a plain NumPy argsort, 16-bit storage, and the optional faiss backend."""

from __future__ import annotations

import sys

import numpy as np
import pytest

from keras_sphereface.inference.search import (
    FAISS_HINT,
    FaissIndex,
    exact_search,
    from_storage,
    import_faiss,
    to_storage,
)


def _unit(rng, rows, dim=32):
    vectors = rng.standard_normal((rows, dim)).astype(np.float32)
    return vectors / np.linalg.norm(vectors, axis=1, keepdims=True)


def _mated(rng, gallery, count, cosine=0.5):
    """Probes at `cosine` to randomly chosen gallery rows (as a genuine face match)."""
    mates = rng.choice(len(gallery), count, replace=False)
    noise = _unit(rng, count, gallery.shape[1])
    noise -= (noise * gallery[mates]).sum(1, keepdims=True) * gallery[mates]
    noise /= np.linalg.norm(noise, axis=1, keepdims=True)
    probes = cosine * gallery[mates] + np.sqrt(1 - cosine**2) * noise
    return probes.astype(np.float32), mates


@pytest.mark.parametrize("block_rows", [1, 7, 100, 999, 5000])
def test_blocked_exact_search_equals_a_stable_argsort(block_rows):
    rng = np.random.default_rng(0)
    # multiples of 1/8: every product and sum is exact in float32 whatever the summation order, so equal
    # scores are really equal (many ties) and the lower row must come first
    gallery = rng.integers(-4, 5, (1000, 32)).astype(np.float32) / 8
    queries = rng.integers(-4, 5, (300, 32)).astype(np.float32) / 8  # more than one query chunk of 256
    gallery[[10, 500, 900]] = gallery[700]
    queries[0] = gallery[700]
    scores = queries @ gallery.T
    expected = np.argsort(-scores, axis=1, kind="stable")[:, :8]
    found = exact_search(gallery, queries, k=8, block_rows=block_rows)
    np.testing.assert_array_equal(found.indices, expected)
    np.testing.assert_array_equal(found.scores, np.take_along_axis(scores, expected, axis=1))
    assert found.indices[0, :4].tolist() == [10, 500, 700, 900]
    unit = _unit(rng, 2000)
    probes = _unit(rng, 20)
    np.testing.assert_array_equal(exact_search(unit, probes, 5, block_rows=block_rows).indices,
                                  np.argsort(-(probes @ unit.T), axis=1, kind="stable")[:, :5])


def test_fewer_rows_than_k_are_padded():
    rng = np.random.default_rng(1)
    gallery, queries = _unit(rng, 3), _unit(rng, 2)
    found = exact_search(gallery, queries, k=5)
    assert (found.indices[:, 3:] == -1).all() and np.isneginf(found.scores[:, 3:]).all()
    assert sorted(found.indices[0, :3].tolist()) == [0, 1, 2]


@pytest.mark.parametrize("dtype", ["float16", "bfloat16"])
def test_16_bit_storage_halves_memory_and_finds_the_same_mates(dtype):
    rng = np.random.default_rng(2)
    gallery = _unit(rng, 20000, 128)
    probes, mates = _mated(rng, gallery, 200)
    stored = to_storage(gallery, dtype)
    assert stored.nbytes * 2 == gallery.nbytes
    full = exact_search(gallery, probes, 3)
    half = exact_search(stored, probes, 3, dtype=dtype, block_rows=3000)
    assert (half.indices[:, 0] == full.indices[:, 0]).all() and (half.indices[:, 0] == mates).all()
    # the score error of one 16-bit row: relative rounding 2^-11 (float16) or 2^-9 (bfloat16) per value
    np.testing.assert_allclose(half.scores[:, 0], full.scores[:, 0], atol=1e-3 if dtype == "float16" else 5e-3)


def test_bfloat16_rounds_to_nearest_even_as_ml_dtypes():
    ml_dtypes = pytest.importorskip("ml_dtypes", reason="ml_dtypes (a Keras dependency) is the reference")
    values = np.random.default_rng(3).standard_normal((50, 64)).astype(np.float32)
    values[0, :3] = [1.0 + 2**-8, 1.0 + 3 * 2**-8, -(1.0 + 2**-8)]  # halfway cases
    ours = from_storage(to_storage(values, "bfloat16"), "bfloat16")
    np.testing.assert_array_equal(ours, values.astype(ml_dtypes.bfloat16).astype(np.float32))


def test_bad_searches_are_refused():
    gallery = _unit(np.random.default_rng(4), 10)
    with pytest.raises(ValueError, match="empty"):
        exact_search(gallery[:0], gallery[:1])
    with pytest.raises(ValueError, match=r"\(num_queries, 32\)"):
        exact_search(gallery, np.ones((1, 31), np.float32))
    with pytest.raises(ValueError, match="NaN"):
        exact_search(gallery, np.full((1, 32), np.nan, np.float32))
    with pytest.raises(ValueError, match="at least 1"):
        exact_search(gallery, gallery[:1], k=0)
    with pytest.raises(ValueError, match="dtype must be one of"):
        exact_search(gallery, gallery[:1], dtype="int8")


def test_missing_faiss_says_how_to_install_it(monkeypatch):
    monkeypatch.setitem(sys.modules, "faiss", None)
    with pytest.raises(ImportError, match=r"pip install keras_sphereface\[faiss\]"):
        import_faiss()
    assert "keras_sphereface[faiss]" in FAISS_HINT


def test_faiss_backend_finds_mates_with_exact_scores():
    pytest.importorskip("faiss", reason="the optional faiss-cpu extra is not installed (pip install "
                                        "keras_sphereface[faiss])")
    rng = np.random.default_rng(5)
    gallery = _unit(rng, 5000, 128)
    probes, mates = _mated(rng, gallery, 100, cosine=0.7)
    index = FaissIndex(gallery, threads=1)
    assert index.factory == "PQ16x4fs,RFlat" and len(index) == 5000
    found = index.search(probes, 3)
    exact = exact_search(gallery, probes, 3)
    assert (exact.indices[:, 0] == mates).all()
    assert (found.indices[:, 0] == exact.indices[:, 0]).mean() >= 0.99
    agree = found.indices[:, 0] == exact.indices[:, 0]
    np.testing.assert_allclose(found.scores[agree, 0], exact.scores[agree, 0], atol=1e-5)  # re-scored exactly
    small = FaissIndex(gallery[:50])
    assert small.factory == "Flat"
    np.testing.assert_array_equal(small.search(probes, 2).indices, exact_search(gallery[:50], probes, 2).indices)
