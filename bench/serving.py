"""Embeddings per second of an exported MobileFaceNet: SavedModel, TFLite and ONNX Runtime, on this CPU.

Exports `MobileFaceNet` (weights `casia` when `$KSF_WEIGHTS_DIR` is set, else random: the speed does
not depend on the values) with `keras_sphereface.export.export_model` in the three formats, then
times each runtime on 112x96 float32 pixel batches (preprocessing and L2 normalization included, as
served):
    - batch 1: `--calls` timed calls after a warm-up; images/s, and per-call latency p50 / p99 in ms;
    - batch 64: `--batches` timed calls after a warm-up; images/s.
One JSON line per (runtime, batch) (`bench/_report.py`: figures, then hardware, versions, threads and
the load average, which matters on a shared machine).

    KSF_WEIGHTS_DIR=../shared/weights python bench/serving.py [--calls 200] [--batches 10] [--threads 2]
        [--ort-spinning]
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
import warnings

import numpy as np
from _report import emit  # bench/_report.py: the header every bench script reports


def _time(call, images: np.ndarray, calls: int, warmup: int) -> dict:
    for _ in range(warmup):
        call(images)
    latencies = []
    start = time.perf_counter()
    for _ in range(calls):
        tick = time.perf_counter()
        call(images)
        latencies.append(time.perf_counter() - tick)
    total = time.perf_counter() - start
    figures = {"images_per_s": round(calls * len(images) / total, 1)}
    if len(images) == 1:
        figures["p50_ms"] = round(1000 * float(np.percentile(latencies, 50)), 2)
        figures["p99_ms"] = round(1000 * float(np.percentile(latencies, 99)), 2)
    return figures


def _runtimes(paths: dict, threads: int, spinning: bool) -> dict:
    import onnxruntime
    import tensorflow as tf

    serve = tf.saved_model.load(str(paths["savedmodel"])).signatures["serving_default"]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # tf.lite.Interpreter's deprecation notice
        interpreter = tf.lite.Interpreter(model_path=str(paths["tflite"] / "model.tflite"), num_threads=threads)
    tflite = interpreter.get_signature_runner("serving_default")
    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = threads
    # Spinning worker threads halve ONNX Runtime's throughput on a shared, oversubscribed CPU (measured
    # here: 33 vs 64 images/s at batch 64 under a load average of 5 on 2 cores); `--ort-spinning` restores it.
    options.add_session_config_entry("session.intra_op.allow_spinning", "1" if spinning else "0")
    session = onnxruntime.InferenceSession(str(paths["onnx"] / "model.onnx"), options,
                                           providers=["CPUExecutionProvider"])
    return {
        "savedmodel (tf.saved_model.load, serving_default)":
            lambda x: serve(images=tf.constant(x))["embedding"].numpy(),
        "tflite (tf.lite.Interpreter)": lambda x: tflite(images=x)["embedding"],
        "onnx (onnxruntime CPUExecutionProvider)": lambda x: session.run(None, {"images": x})[0],
    }


def main(argv=None) -> int:
    """Exports, times and prints one JSON line per runtime and batch size."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=200, help="Timed calls at batch 1.")
    parser.add_argument("--batches", type=int, default=10, help="Timed calls at batch 64.")
    parser.add_argument("--threads", type=int, default=len(os.sched_getaffinity(0)),
                        help="Threads for TFLite and ONNX Runtime (TensorFlow uses its default pools).")
    parser.add_argument("--ort-spinning", action="store_true", help="Let ONNX Runtime's threads spin-wait.")
    args = parser.parse_args(argv)

    from keras_sphereface.export import export_model
    from keras_sphereface.models import MobileFaceNet

    weights = "casia" if os.environ.get("KSF_WEIGHTS_DIR") else None
    model = MobileFaceNet(weights=weights)
    rng = np.random.default_rng(0)
    with tempfile.TemporaryDirectory(prefix="ksf-bench-serving-") as root:
        paths = {fmt: export_model(model, root, format=fmt, warmup=False).path for fmt in ("savedmodel", "tflite",
                                                                                           "onnx")}
        runtimes = _runtimes(paths, args.threads, args.ort_spinning)
        for what, call in runtimes.items():
            for batch, calls, warmup in ((1, args.calls, 10), (64, args.batches, 2)):
                images = rng.uniform(0, 255, (batch, 112, 96, 3)).astype(np.float32)
                figures = _time(call, images, calls, warmup)
                emit({"what": what, **figures, "precision": "float32", "batch": batch, "calls": calls,
                      "model": f"mobilefacenet weights={weights}", "runtime_threads": args.threads,
                      "ort_allow_spinning": args.ort_spinning})
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
