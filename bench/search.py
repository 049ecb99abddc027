"""1:N gallery search: exact cosine top-k (float32, float16, bfloat16 storage) and the faiss backend.

Random unit vectors (seeded) stand in for a gallery of `--rows` faces of `--dim` values. Two kinds of probes:
"mated" probes, a gallery row plus noise at cosine 0.5 to it (a genuine face match scores about that), and
"random" probes (the hard case for a top-1 comparison: the best and second-best rows differ by ~0.01).

Per gallery size and storage dtype (`keras_sphereface.inference.exact_search`): the median latency of one
probe, queries/s at batch `--batch` (and the GFLOP/s this is: `2 * rows * dim` per query, against the
cores' peak), the bytes of the stored vectors, and recall@1 of 16-bit storage against float32. With
`--faiss`, the `FaissIndex` default: build time, latency of one probe, recall@1 against exact, speed-up.

    python bench/search.py [--rows 100000,1000000] [--dim 512] [--dtypes float32,float16,bfloat16]
        [--batch 64] [--calls 10] [--block-rows 32768] [--faiss] [--faiss-threads 1] [--peak-gflops X]
One JSON line per configuration (`bench/_report.py` header).
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from pathlib import Path

import numpy as np
from _report import emit

from keras_sphereface.inference.search import DEFAULT_BLOCK_ROWS, FaissIndex, exact_search, import_faiss, to_storage
from keras_sphereface.utils.vectors import l2_normalize_rows

#: Cosine of a mated probe with its gallery row.
MATE_COSINE = 0.5


def nominal_peak_gflops() -> tuple[float, str]:
    """FP32 peak of the usable cores from /proc/cpuinfo: cores x FLOP/cycle (from the flags) x the listed clock."""
    path = Path("/proc/cpuinfo")
    text = path.read_text(encoding="utf-8") if path.exists() else ""
    mhz = next((float(line.split(":")[1]) for line in text.splitlines() if line.startswith("cpu MHz")), 0.0)
    flags = next((line.split(":")[1].split() for line in text.splitlines() if line.startswith("flags")), [])
    # Two FMA pipes per core: 2 x 8 float32 x 2 FLOP with AVX2 (256-bit); 2 x 16 x 2 with AVX-512 (Intel).
    per_cycle = 64 if "avx512f" in flags else 32 if "fma" in flags else 8
    cores = len(os.sched_getaffinity(0))
    return cores * per_cycle * mhz / 1e3, f"{cores} cores x {per_cycle} FLOP/cycle x {mhz:.0f} MHz"


def unit_rows(rng: np.random.Generator, rows: int, dim: int) -> np.ndarray:
    """float32 `(rows, dim)` random unit vectors, made in chunks (bounded temporary memory)."""
    out = np.empty((rows, dim), dtype=np.float32)
    for start in range(0, rows, 65536):
        chunk = rng.standard_normal((min(65536, rows - start), dim), dtype=np.float32)
        out[start : start + len(chunk)] = l2_normalize_rows(chunk)
    return out


def mated_probes(rng: np.random.Generator, gallery: np.ndarray, count: int) -> tuple[np.ndarray, np.ndarray]:
    """`(probes, mates)`: unit probes at cosine `MATE_COSINE` to the gallery rows `mates`."""
    mates = rng.choice(len(gallery), count, replace=False)
    noise = unit_rows(rng, count, gallery.shape[1])
    noise -= (noise * gallery[mates]).sum(axis=1, keepdims=True) * gallery[mates]  # orthogonal to the mate
    noise = l2_normalize_rows(noise)
    probes = MATE_COSINE * gallery[mates] + np.sqrt(1 - MATE_COSINE**2) * noise
    return l2_normalize_rows(probes).astype(np.float32), mates


def median_seconds(call, calls: int) -> float:
    """Median wall time of `call()` over `calls` runs, after one warm-up run."""
    call()
    times = []
    for _ in range(calls):
        tick = time.perf_counter()
        call()
        times.append(time.perf_counter() - tick)
    return statistics.median(times)


def time_exact(args, stored, dtype, mated, mates, random_probes, reference, peak) -> dict:
    """The record of one exact-search configuration (latency, batch throughput, memory, recall)."""

    def search(queries):
        return exact_search(stored, queries, args.k, dtype, args.block_rows)

    rows = len(stored)
    one = median_seconds(lambda: search(mated[:1]), args.calls)
    batch = median_seconds(lambda: search(mated[: args.batch]), max(3, args.calls // 3))
    gflops = 2 * rows * args.dim * args.batch / batch / 1e9
    recall = {name: float(np.mean(search(probes).indices[:, 0] == reference[name]))
              for name, probes in (("mated", mated), ("random", random_probes))}
    return {"what": "exact_search", "rows": rows, "dim": args.dim, "precision": dtype, "batch": args.batch,
            "block_rows": args.block_rows, "k": args.k, "latency_1_probe_ms": round(1000 * one, 2),
            "queries_per_s_batch": round(args.batch / batch, 1), "gflops_batch": round(gflops, 1),
            "peak_gflops": round(peak, 1), "fraction_of_peak": round(gflops / peak, 3),
            "memory_mb": round(stored.nbytes / 2**20, 1), "recall_at_1_vs_float32": recall,
            "mate_found_at_1": float(np.mean(search(mated).indices[:, 0] == mates))}


def time_faiss(args, gallery, mated, random_probes, reference, exact_latency) -> dict:
    """The record of the faiss backend: build time, latency of one probe, recall@1 against exact, speed-up."""
    tick = time.perf_counter()
    index = FaissIndex(gallery, factory=args.faiss_factory, threads=args.faiss_threads)
    build = time.perf_counter() - tick
    one = median_seconds(lambda: index.search(mated[:1], args.k), max(args.calls, 50))
    recall = {name: float(np.mean(index.search(probes, 1).indices[:, 0] == reference[name]))
              for name, probes in (("mated", mated), ("random", random_probes))}
    return {"what": "faiss_search", "faiss_version": import_faiss().__version__, "rows": len(gallery), "dim": args.dim,
            "precision": "float32", "batch": 1,
            "factory": index.factory, "k_factor": index.k_factor, "faiss_threads": args.faiss_threads,
            "build_s": round(build, 1), "latency_1_probe_ms": round(1000 * one, 3),
            "speedup_vs_exact_float32": None if exact_latency is None else round(exact_latency / one, 1),
            "recall_at_1_vs_exact": recall}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", default="100000,1000000")
    parser.add_argument("--dim", type=int, default=512)
    parser.add_argument("--dtypes", default="float32,float16,bfloat16")
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--calls", type=int, default=10)
    parser.add_argument("--recall-probes", type=int, default=512)
    parser.add_argument("--block-rows", type=int, default=DEFAULT_BLOCK_ROWS)
    parser.add_argument("--k", type=int, default=5)
    parser.add_argument("--faiss", action="store_true", help="Also time the faiss backend (needs faiss-cpu).")
    parser.add_argument("--faiss-threads", type=int, default=1)
    parser.add_argument("--faiss-factory", default=None)
    parser.add_argument("--peak-gflops", type=float, default=None, help="Default: nominal_peak_gflops().")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    peak, peak_basis = (args.peak_gflops, "given") if args.peak_gflops else nominal_peak_gflops()
    for rows in (int(r) for r in args.rows.split(",")):
        rng = np.random.default_rng(args.seed)
        gallery = unit_rows(rng, rows, args.dim)
        mated, mates = mated_probes(rng, gallery, max(args.batch, args.recall_probes))
        random_probes = unit_rows(rng, args.recall_probes, args.dim)
        reference = {name: exact_search(gallery, probes, 1).indices[:, 0]
                     for name, probes in (("mated", mated), ("random", random_probes))}
        exact_latency = None
        for dtype in args.dtypes.split(","):
            record = time_exact(args, to_storage(gallery, dtype), dtype, mated, mates, random_probes, reference, peak)
            record["peak_basis"] = peak_basis
            if dtype == "float32":
                exact_latency = record["latency_1_probe_ms"] / 1000
            emit(record)
        if args.faiss:
            emit(time_faiss(args, gallery, mated, random_probes, reference, exact_latency))


if __name__ == "__main__":
    main()
