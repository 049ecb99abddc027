"""Margin heads against a plain softmax classifier: step time and peak memory at 10k to 1M classes.

One training step of the head alone (forward, cross-entropy, backward, SGD momentum update) on random
`(batch, dim)` embeddings, for every head and a `Dense` + softmax baseline, at each class count. Each
(head, classes) runs in its own process so its peak memory (`ru_maxrss`) is its own; the heads of one
class count run one after another, in rounds, and the median step time is compared with the baseline's
of the same rounds (ratios, not absolute times, are what carries across noisy machines).

Usage: python bench/heads.py [--classes 10000,100000,1000000] [--batch 64] [--dim 512] [--steps 5]
       [--rounds 2] [--jit] [--compare-formulation]
With `--compare-formulation` every margin head also runs as written before issue 11 (`<name>_before`,
defined in `bench/margin_heads.py`), in the same rounds.
Prints one JSON line per class count (`bench/_report.py` header).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
from pathlib import Path

HEADS = ("dense_softmax", "a_softmax_m4", "arcface", "cosface", "combined", "norm_softmax", "sphereface_r")


def _make_head(name: str, classes: int):
    from margin_heads import make_head  # bench/margin_heads.py (this script's folder is on sys.path)

    return make_head(name, classes)


def _worker(head_name: str, classes: int, batch: int, dim: int, steps: int, jit: bool) -> dict:
    """Times `steps` training steps of one head in this process; returns ms per step and peak RSS."""
    import resource
    import time

    import keras
    import numpy as np

    rng = np.random.default_rng(0)
    embeddings = rng.normal(size=(batch, dim)).astype(np.float32)
    labels = rng.integers(0, classes, size=batch).astype(np.int32)
    inputs = [keras.Input((dim,)), keras.Input((), dtype="int32")]
    model = keras.Model(inputs, _make_head(head_name, classes)(inputs))
    model.compile(optimizer=keras.optimizers.SGD(0.01, momentum=0.9),
                  loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True), jit_compile=jit)
    model.train_on_batch([embeddings, labels], labels)  # trace, compile, create the momentum slots
    times = []
    for _ in range(steps):
        start = time.perf_counter()
        model.train_on_batch([embeddings, labels], labels)
        times.append(time.perf_counter() - start)
    peak_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return {"ms_per_step": 1000 * statistics.median(times), "peak_rss_mb": round(peak_kib / 1024, 1)}


def _run_worker(head: str, classes: int, args) -> dict:
    command = [sys.executable, __file__, "--worker", head, "--classes", str(classes), "--batch", str(args.batch),
               "--dim", str(args.dim), "--steps", str(args.steps)] + (["--jit"] if args.jit else [])
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    done = subprocess.run(command, capture_output=True, text=True, env=env, check=False)
    if done.returncode != 0:
        return {"error": (done.stderr.strip().splitlines() or ["no output"])[-1]}
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--classes", default="10000,100000,1000000")
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--dim", type=int, default=512)
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--jit", action="store_true", help="compile the step with XLA")
    parser.add_argument("--compare-formulation", action="store_true",
                        help="also time every margin head as written before issue 11 (<name>_before)")
    parser.add_argument("--worker", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        print(json.dumps(_worker(args.worker, int(args.classes), args.batch, args.dim, args.steps, args.jit)))
        return

    sys.path.insert(0, str(Path(__file__).parent))
    from _report import emit

    for classes in (int(c) for c in args.classes.split(",")):
        heads = HEADS + (tuple(f"{h}_before" for h in HEADS[1:]) if args.compare_formulation else ())
        runs: dict[str, list[dict]] = {head: [] for head in heads}
        for _ in range(args.rounds):
            for head in heads:
                runs[head].append(_run_worker(head, classes, args))
        ms, memory, errors = {}, {}, {}
        for head, results in runs.items():
            good = [r for r in results if "error" not in r]
            if not good:
                errors[head] = results[0]["error"]
                continue
            ms[head] = round(statistics.median(r["ms_per_step"] for r in good), 2)
            memory[head] = max(r["peak_rss_mb"] for r in good)
        baseline = ms.get("dense_softmax")
        emit({
            "what": f"head training step (forward+backward+SGD momentum), {classes} classes, {args.dim}-d",
            "classes": classes,
            "ms_per_step": ms,
            "images_per_s": {head: round(args.batch * 1000 / value, 1) for head, value in ms.items()},
            "cost_ratio_to_dense_softmax": {head: round(value / baseline, 3) for head, value in ms.items()}
            if baseline else None,
            "peak_rss_mb": memory,
            "errors": errors,
            "precision": "float32",
            "xla": args.jit,
            "batch": args.batch,
            "steps": args.steps,
            "rounds": args.rounds,
        })


if __name__ == "__main__":
    main()
