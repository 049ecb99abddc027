"""MobileFaceNet (CASIA) embeddings per second, every path a user could deploy, against PyTorch, in one run.

Paths (each includes the `(x - 127.5) / 128` scaling and the L2 normalization, as served):
    keras_predict   `model.predict` of the Keras model (what a first try looks like);
    keras_compiled  one `tf.function` around the Keras model (`keras_sphereface.inference` style);
    keras_folded    the same around `fold_batch_norms(model)` (BatchNormalization folded into the
                    convolutions, as the exports serve it): the before/after of the folding;
    savedmodel      `serving_default` of the `ksf export` SavedModel (what TF Serving runs);
    tflite          the TFLite export through `tf.lite.Interpreter`;
    onnxruntime     the ONNX export through ONNX Runtime;
    pytorch         the same weights in our PyTorch port (`bench/torch_mobilefacenet.py`), eager,
                    `torch.inference_mode`.
Each path runs in its own process with the same thread count; the paths alternate over `--rounds`
rounds and each figure is the median over rounds, so the ratios to PyTorch compare like with like.

    KSF_WEIGHTS_DIR=../shared/weights python bench/embed.py [--rounds 3] [--calls 100] [--batches 8]
        [--threads 2] [--paths keras_compiled,savedmodel,...]
One JSON line per batch size (`bench/_report.py` header).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

PATHS = ("keras_predict", "keras_compiled", "keras_folded", "savedmodel", "tflite", "onnxruntime", "pytorch")
NPZ = "mobilefacenet-casia/mobilefacenet_casia_arcface.npz"


def _timed(call, batch: int, calls: int) -> dict:
    images = np.random.default_rng(0).uniform(0, 255, (batch, 112, 96, 3)).astype(np.float32)
    for _ in range(3):
        call(images)
    latencies = []
    for _ in range(calls):
        tick = time.perf_counter()
        call(images)
        latencies.append(time.perf_counter() - tick)
    median = statistics.median(latencies)
    return {"images_per_s": batch / median, "p50_ms": 1000 * median,
            "p99_ms": 1000 * float(np.percentile(latencies, 99))}


def _load(path: str, exports: Path, threads: int):
    """A callable `float32 (batch, 112, 96, 3) pixels -> (batch, 128)` for one path."""
    if path == "pytorch":
        import torch

        sys.path.insert(0, str(Path(__file__).parent))
        from torch_mobilefacenet import MobileFaceNet, load_shared_weights

        torch.set_num_threads(threads)
        net = load_shared_weights(MobileFaceNet(), Path(os.environ["KSF_WEIGHTS_DIR"]) / NPZ)

        def run(images):
            with torch.inference_mode():
                x = torch.from_numpy(images).permute(0, 3, 1, 2).sub(127.5).div(128.0)
                return torch.nn.functional.normalize(net(x), dim=1).numpy()

        return run
    if path == "onnxruntime":
        import onnxruntime

        options = onnxruntime.SessionOptions()
        options.intra_op_num_threads = threads
        session = onnxruntime.InferenceSession(str(exports / "mobilefacenet-onnx" / "1" / "model.onnx"), options,
                                               providers=["CPUExecutionProvider"])
        return lambda images: session.run(None, {"images": images})[0]
    import tensorflow as tf

    tf.config.threading.set_intra_op_parallelism_threads(threads)
    if path == "tflite":
        interpreter = tf.lite.Interpreter(str(exports / "mobilefacenet-tflite" / "1" / "model.tflite"),
                                          num_threads=threads)
        runner = interpreter.get_signature_runner("serving_default")
        return lambda images: runner(images=images)["embedding"]
    if path == "savedmodel":
        serve = tf.saved_model.load(str(exports / "mobilefacenet" / "1")).signatures["serving_default"]
        return lambda images: serve(images=tf.constant(images))["embedding"].numpy()
    from keras_sphereface.models import MobileFaceNet, fold_batch_norms
    from keras_sphereface.models.preprocessing import scale_pixels

    model = MobileFaceNet(weights="casia")
    if path == "keras_folded":
        model = fold_batch_norms(model)
    if path == "keras_predict":
        return lambda images: tf.math.l2_normalize(model.predict(scale_pixels(images), verbose=0), axis=1).numpy()

    @tf.function(input_signature=[tf.TensorSpec((None, 112, 96, 3), tf.float32)])
    def embed(images):
        return tf.math.l2_normalize(model(scale_pixels(images), training=False), axis=1)

    return lambda images: embed(images).numpy()


def _worker(args) -> None:
    call = _load(args.worker, Path(args.exports), args.threads)
    print(json.dumps({"1": _timed(call, 1, args.calls), "64": _timed(call, 64, args.batches)}))


def _export(root: Path) -> None:
    from keras_sphereface.export import export_model

    for fmt in ("savedmodel", "tflite", "onnx"):
        export_model("mobilefacenet", root, weights="casia", format=fmt, warmup=False)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--calls", type=int, default=100, help="timed calls at batch 1")
    parser.add_argument("--batches", type=int, default=8, help="timed calls at batch 64")
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--paths", default=",".join(PATHS))
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    parser.add_argument("--exports", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        _worker(args)
        return
    if not os.environ.get("KSF_WEIGHTS_DIR"):
        sys.exit("Set KSF_WEIGHTS_DIR (the shared weights: ../shared/weights).")
    from _report import emit

    paths = args.paths.split(",")
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    with tempfile.TemporaryDirectory(prefix="ksf-bench-embed-") as tmp:
        _export(Path(tmp))
        runs: dict[str, list[dict]] = {path: [] for path in paths}
        for _ in range(args.rounds):
            for path in paths:
                command = [sys.executable, __file__, "--worker", path, "--exports", tmp, "--threads",
                           str(args.threads), "--calls", str(args.calls), "--batches", str(args.batches)]
                done = subprocess.run(command, capture_output=True, text=True, env=env, check=True)
                runs[path].append(json.loads(done.stdout.strip().splitlines()[-1]))
    for batch in ("1", "64"):
        figures = {path: {key: round(statistics.median(r[batch][key] for r in results), 2)
                          for key in ("images_per_s", "p50_ms", "p99_ms")} for path, results in runs.items()}
        torch_rate = figures.get("pytorch", {}).get("images_per_s")
        emit({
            "what": "MobileFaceNet casia embeddings (112x96, scaling and L2 normalization included)",
            "batch": int(batch),
            "images_per_s": {path: f["images_per_s"] for path, f in figures.items()},
            "ratio_to_pytorch": {path: round(f["images_per_s"] / torch_rate, 3) for path, f in figures.items()}
            if torch_rate else None,
            "latency_ms": {path: {"p50": f["p50_ms"], "p99": f["p99_ms"]} for path, f in figures.items()},
            "precision": "float32",
            "threads_per_runtime": args.threads,
            "rounds": args.rounds,
        })


if __name__ == "__main__":
    main()
