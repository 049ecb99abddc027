"""Top-k cosine search over unit vectors: exact (NumPy, matrix products in blocks) and approximate (faiss).

- `exact_search`: every gallery row is scored, a block of rows at a time (`queries @ block.T` through
  NumPy's BLAS into one preallocated score buffer), and a running top-k per query is kept: after the
  first block only the scores above a query's current k-th best are looked at again, so the top-k
  costs one comparison pass per block instead of a partial sort. Ties go to the lower row, so the
  result equals a stable `np.argsort(-scores)` of the full score matrix.
- Storage (`STORAGE_DTYPES`): `float32`; `float16` (IEEE half: 10 mantissa bits, converted by NumPy a
  block at a time); `bfloat16` (the upper 16 bits of the float32, kept as `uint16` bit patterns since
  NumPy has no such dtype; converted by a 16-bit shift, 4x cheaper than NumPy's float16 cast). Both
  16-bit kinds halve the memory; the products themselves run in float32.
- `FaissIndex`: the approximate backend for galleries too large to scan for every probe, through the
  optional `faiss-cpu` package (`pip install keras_sphereface[faiss]`).
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
from concurrent.futures import ThreadPoolExecutor

import numpy as np

#: How gallery vectors may be stored.
STORAGE_DTYPES = ("float32", "float16", "bfloat16")
#: The NumPy dtype that holds each storage kind (bfloat16 as its bit patterns).
STORAGE_NUMPY_DTYPES = {"float32": np.dtype(np.float32), "float16": np.dtype(np.float16),
                        "bfloat16": np.dtype(np.uint16)}
#: Gallery rows scored per matrix product (`bench/search.py`: 32k rows beat 4k and 16k by 5-10% on 2 cores).
DEFAULT_BLOCK_ROWS = 32768
#: Queries scored together; larger batches are cut into chunks of this many (bounds the score buffer).
QUERY_CHUNK = 256
#: The `pip` extra that installs faiss.
FAISS_HINT = "pip install keras_sphereface[faiss]"


@dataclasses.dataclass(frozen=True)
class SearchResult:
    """The top-k gallery rows of each query, best first.

    Attributes:
        indices: int64 `(num_queries, k)`. Gallery rows; -1 where the gallery has fewer than k rows.
        scores: float32 `(num_queries, k)`. Cosine similarities in `[-1, 1]`; `-inf` where `indices` is -1.
    """

    indices: np.ndarray
    scores: np.ndarray


def check_storage_dtype(dtype: str) -> str:
    """Returns `dtype` if it is one of `STORAGE_DTYPES`, else raises a `ValueError`."""
    if dtype not in STORAGE_DTYPES:
        raise ValueError(f"dtype must be one of {list(STORAGE_DTYPES)}. Received: dtype={dtype!r}")
    return dtype


def to_storage(vectors: np.ndarray, dtype: str) -> np.ndarray:
    """float32 `(n, dim)` rows -> the array that stores them as `dtype` (bfloat16: rounded to nearest even).

    Returns:
        `(n, dim)` of `STORAGE_NUMPY_DTYPES[dtype]`.
    """
    check_storage_dtype(dtype)
    vectors = np.ascontiguousarray(vectors, dtype=np.float32)
    if dtype != "bfloat16":
        return vectors.astype(STORAGE_NUMPY_DTYPES[dtype])
    bits = vectors.view(np.uint32)
    rounded = bits + (np.uint32(0x7FFF) + ((bits >> np.uint32(16)) & np.uint32(1)))
    return (rounded >> np.uint32(16)).astype(np.uint16)


def from_storage(stored: np.ndarray, dtype: str, out: np.ndarray | None = None) -> np.ndarray:
    """The float32 values of stored rows (`to_storage`'s inverse up to its rounding).

    Args:
        stored: `(n, dim)` array of `STORAGE_NUMPY_DTYPES[dtype]`.
        dtype: str. One of `STORAGE_DTYPES`.
        out: float32 `(n, dim)` or None. Written in place when given.

    Returns:
        float32 `(n, dim)`: `out`, or a new array (`stored` itself for float32 without `out`).
    """
    check_storage_dtype(dtype)
    if dtype == "float32" and out is None:
        return np.asarray(stored, dtype=np.float32)
    if out is None:
        out = np.empty(stored.shape, dtype=np.float32)
    if dtype == "bfloat16":
        np.left_shift(stored, 16, out=out.view(np.uint32), dtype=np.uint32)
    else:
        np.copyto(out, stored)
    return out


def _threads() -> int:
    """Cores this process may use (the threads that convert 16-bit blocks)."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


def _convert(block: np.ndarray, dtype: str, out: np.ndarray, pool: ThreadPoolExecutor | None) -> np.ndarray:
    """`from_storage(block, dtype, out)`, its rows split over the threads of `pool` (NumPy releases the GIL)."""
    if pool is None:
        return from_storage(block, dtype, out=out)
    step = -(-len(block) // _threads())
    parts = [slice(i, i + step) for i in range(0, len(block), step)]
    list(pool.map(lambda part: from_storage(block[part], dtype, out=out[part]), parts))
    return out


def _check_queries(queries: np.ndarray, dim: int) -> np.ndarray:
    queries = np.ascontiguousarray(queries, dtype=np.float32)
    if queries.ndim != 2 or queries.shape[1] != dim:
        raise ValueError(f"queries must be (num_queries, {dim}) to match the gallery. "
                         f"Received: queries.shape={queries.shape}")
    if not np.isfinite(queries).all():
        raise ValueError("queries hold NaN or infinite values (an image without an embedding?). "
                         f"Received: {int((~np.isfinite(queries).all(axis=1)).sum())} such rows")
    return queries


def _ordered(scores: np.ndarray, indices: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """The best `k` of each row of candidates: score descending, then row index ascending."""
    order = np.lexsort((indices, -scores), axis=-1)[:, :k]
    return np.take_along_axis(scores, order, axis=1), np.take_along_axis(indices, order, axis=1)


def _block_top(scores: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """`(scores, columns)` `(q, k)` of each row's k best entries, equal scores taken from the lowest columns."""
    rows = scores.shape[1]
    if rows <= k:
        return scores.copy(), np.broadcast_to(np.arange(rows), scores.shape).copy()
    kth = -np.partition(-scores, k - 1, axis=1)[:, k - 1 : k]
    chosen = scores >= kth
    if np.count_nonzero(chosen) != k * len(scores):  # ties at the k-th score: keep the lowest columns
        tied = scores == kth
        room = k - (scores > kth).sum(axis=1, keepdims=True)
        chosen = (scores > kth) | (tied & (np.cumsum(tied, axis=1) <= room))
    columns = (np.flatnonzero(chosen) % rows).reshape(len(scores), k)  # flatnonzero: ~15x faster than 2-D nonzero
    return np.take_along_axis(scores, columns, axis=1), columns


class _TopK:
    """A running top-k per query over blocks of gallery rows given in increasing row order."""

    def __init__(self, num_queries: int, k: int):
        self.k = k
        self.scores = np.full((num_queries, k), -np.inf, dtype=np.float32)
        self.indices = np.full((num_queries, k), -1, dtype=np.int64)
        self.floor = np.full((num_queries, 1), -np.inf, dtype=np.float32)  # each query's k-th best so far
        self._mask: np.ndarray | None = None

    def update(self, block_scores: np.ndarray, start: int) -> None:
        """Merges the scores `(q, rows)` of gallery rows `start, start + 1, ...`."""
        if self._mask is None or self._mask.shape[1] < block_scores.shape[1]:
            self._mask = np.empty(block_scores.shape, dtype=bool)
        mask = self._mask[:, : block_scores.shape[1]]
        np.greater(block_scores, self.floor, out=mask)  # a later row that only ties the k-th best loses
        counts = np.count_nonzero(mask, axis=1)
        width = int(counts.max())
        if width == 0:
            return
        if width > 4 * self.k:  # early blocks: many candidates, select per block first
            scores, columns = _block_top(block_scores, self.k)
            self._merge_all(scores, columns + start)
            return
        rows, columns = np.divmod(np.flatnonzero(mask), mask.shape[1])  # ~15x faster than a 2-D nonzero
        slot = np.arange(len(rows)) - (np.cumsum(counts) - counts)[rows]  # each candidate's place in its row
        scores = np.full((len(block_scores), width), -np.inf, dtype=np.float32)
        indices = np.full((len(block_scores), width), np.iinfo(np.int64).max, dtype=np.int64)
        scores[rows, slot] = block_scores[rows, columns]
        indices[rows, slot] = columns + start
        self._merge_all(scores, indices)

    def _merge_all(self, scores: np.ndarray, indices: np.ndarray) -> None:
        self.scores, self.indices = _ordered(np.concatenate([self.scores, scores], axis=1),
                                             np.concatenate([self.indices, indices], axis=1), self.k)
        self.floor[:, 0] = self.scores[:, -1]


def exact_search(
    stored: np.ndarray,
    queries: np.ndarray,
    k: int = 5,
    dtype: str = "float32",
    block_rows: int = DEFAULT_BLOCK_ROWS,
) -> SearchResult:
    """Exact cosine top-k of unit `queries` against unit gallery rows, by matrix products in blocks.

    Args:
        stored: `(num_rows, dim)` gallery rows as `to_storage(rows, dtype)` stores them (unit L2 norm).
        queries: float `(num_queries, dim)`. Unit L2 norm (cosine = inner product).
        k: int >= 1. Results per query (fewer rows in the gallery: padded with -1 / -inf).
        dtype: str. How `stored` holds the rows (`STORAGE_DTYPES`).
        block_rows: int >= 1. Gallery rows per matrix product.

    Returns:
        A `SearchResult` `(num_queries, k)`, best first; equal scores in increasing row order.

    Raises:
        ValueError: an empty gallery, `k` or `block_rows` < 1, queries of another width or not finite.
    """
    check_storage_dtype(dtype)
    if k < 1 or block_rows < 1:
        raise ValueError(f"k and block_rows must be at least 1. Received: k={k}, block_rows={block_rows}")
    if stored.ndim != 2 or len(stored) == 0:
        raise ValueError(f"The gallery is empty: there is nothing to search. Received: shape={stored.shape}")
    queries = _check_queries(queries, stored.shape[1])
    found = min(k, len(stored))
    block_rows = max(block_rows, found)
    chunk = min(QUERY_CHUNK, len(queries))
    score_buffer = np.empty((chunk, min(block_rows, len(stored))), dtype=np.float32)
    convert_buffer = None if dtype == "float32" else np.empty((score_buffer.shape[1], stored.shape[1]), np.float32)
    indices = np.full((len(queries), k), -1, dtype=np.int64)
    scores = np.full((len(queries), k), -np.inf, dtype=np.float32)
    threads = _threads()
    parallel = convert_buffer is not None and threads > 1
    with ThreadPoolExecutor(threads) if parallel else contextlib.nullcontext() as pool:
        _search_chunks(stored, queries, dtype, block_rows, found, score_buffer, convert_buffer, pool, indices, scores)
    return SearchResult(indices, scores)


def _search_chunks(stored, queries, dtype, block_rows, found, score_buffer, convert_buffer, pool, indices, scores):
    """The loops of `exact_search`: query chunks x gallery blocks, into `indices` and `scores`."""
    chunk = score_buffer.shape[0]
    for first in range(0, len(queries), chunk):
        batch = queries[first : first + chunk]
        top = _TopK(len(batch), found)
        for start in range(0, len(stored), block_rows):
            block = stored[start : start + block_rows]
            if convert_buffer is not None:
                block = _convert(block, dtype, convert_buffer[: len(block)], pool)
            out = score_buffer[: len(batch), : len(block)]
            np.matmul(batch, block.T, out=out)
            top.update(out, start)
        indices[first : first + chunk, :found] = top.indices
        scores[first : first + chunk, :found] = top.scores


def import_faiss():
    """The `faiss` module, or an `ImportError` that says how to install it."""
    try:
        import faiss
    except ImportError as error:
        raise ImportError(f"The approximate search backend needs faiss: {FAISS_HINT} (the faiss-cpu "
                          f"package). Exact search needs nothing more. Received: {error}") from error
    return faiss


def default_factory(dim: int, rows: int) -> str:
    """The faiss index a gallery of `rows` vectors of length `dim` gets by default (see `FaissIndex`)."""
    if rows < FaissIndex.MIN_TRAINING_ROWS:
        return "Flat"
    subspaces = next(m for m in (dim // 8, dim // 4, dim // 2, dim) if m >= 1 and dim % m == 0)
    return f"PQ{subspaces}x4fs,RFlat"


class FaissIndex:
    """An approximate inner-product index over unit vectors (faiss), for galleries too large to scan.

    The default (`default_factory`): 4-bit product quantization with SIMD "fast scan" (`PQ{dim/8}x4fs`:
    a vector becomes `dim / 16` bytes, 32 times fewer than float32, so a probe reads 64 MB instead of
    2 GB for a million 512-d rows), whose best `k * k_factor` candidates are re-scored exactly against
    a float32 copy (`RFlat`): the scores returned are exact cosines, only the candidate list is
    approximate. Training (k-means per sub-space) runs on at most `max_training_rows` rows; a gallery
    below `MIN_TRAINING_ROWS` rows gets an exact `Flat` index. Any faiss `index_factory` string can be
    given instead (e.g. `"HNSW32,Flat"`, `"IVF4096,Flat"`); it is built with the inner-product metric.

    Args:
        vectors: float32 `(num_rows, dim)`. Unit rows.
        factory: str or None. A faiss `index_factory` string; None: `default_factory`.
        k_factor: int. Candidates re-scored per result (`RFlat` indexes only).
        threads: int or None. faiss's OpenMP threads (None: faiss's default, one per core).
        max_training_rows: int. Rows the index is trained on (an evenly spaced subset).
        seed: int. Seed of faiss's k-means.

    Raises:
        ImportError: faiss is not installed (says `pip install keras_sphereface[faiss]`).
        ValueError: no vectors.
    """

    #: Fewer rows than this get an exact `Flat` index (4-bit PQ trains 16 centroids per sub-space).
    MIN_TRAINING_ROWS = 1024

    def __init__(
        self,
        vectors: np.ndarray,
        factory: str | None = None,
        k_factor: int = 64,
        threads: int | None = None,
        max_training_rows: int = 100_000,
        seed: int = 0,
    ):
        faiss = import_faiss()
        vectors = np.ascontiguousarray(vectors, dtype=np.float32)
        if vectors.ndim != 2 or len(vectors) == 0:
            raise ValueError(f"The gallery is empty: there is nothing to index. Received: shape={vectors.shape}")
        self.dim = vectors.shape[1]
        self.factory = factory or default_factory(self.dim, len(vectors))
        self.k_factor = int(k_factor)
        self.threads = threads
        if threads is not None:
            faiss.omp_set_num_threads(int(threads))
        self.index = faiss.index_factory(self.dim, self.factory, faiss.METRIC_INNER_PRODUCT)
        if not self.index.is_trained:
            step = max(1, len(vectors) // max_training_rows)
            _seed_clustering(faiss, self.index, seed)
            self.index.train(vectors[::step][:max_training_rows])
        self.index.add(vectors)
        if hasattr(self.index, "k_factor"):
            self.index.k_factor = self.k_factor

    def __len__(self) -> int:
        return int(self.index.ntotal)

    def search(self, queries: np.ndarray, k: int = 5) -> SearchResult:
        """The approximate top-k of unit `queries` `(num_queries, dim)`; same layout as `exact_search`."""
        if k < 1:
            raise ValueError(f"k must be at least 1. Received: k={k}")
        queries = _check_queries(queries, self.dim)
        scores, indices = self.index.search(queries, k)
        indices = indices.astype(np.int64)
        scores = np.where(indices < 0, -np.inf, scores).astype(np.float32)
        return SearchResult(indices, scores)


def _seed_clustering(faiss, index, seed: int) -> None:
    """Sets the k-means seed of a product quantizer, where the index has one (reproducible builds)."""
    base = faiss.downcast_index(index.base_index) if hasattr(index, "base_index") else index
    quantizer = getattr(base, "pq", None)
    if quantizer is not None and hasattr(quantizer, "cp"):
        quantizer.cp.seed = seed
