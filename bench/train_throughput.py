"""Training throughput of `ksf train` (images/s), one JSON line per configuration.

Each configuration runs the real training loop (`keras_sphereface.training.train`: input pipeline,
forward, backward, SGD update) in a fresh subprocess, because the logical CPU devices that
MirroredStrategy splits the batch over must be configured before TensorFlow starts. The figure is
the mean images/s of the logged intervals after the warm-up ones (tracing, pipeline fill).

    python bench/train_throughput.py --tfrecords 'out/lfw/devtrain-records/train-*.tfrecord'
    {"what": "train step sphere20 + a-softmax", "images_per_s": ..., "hardware": "...", "precision":
     "float32", "batch": 64, "strategy": "one", ...}

Default configurations: Sphere-20 at batch 64, float32 vs mixed_bfloat16, one device vs
MirroredStrategy over 2 logical CPU devices (`--configs` chooses others).
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import platform
import subprocess
import sys
import tempfile
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
DEFAULT_CONFIGS = ("float32:one", "mixed_bfloat16:one", "float32:mirrored", "mixed_bfloat16:mirrored")


def _hardware() -> str:
    name = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as handle:
            for line in handle:
                if line.startswith("model name"):
                    name = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    return f"{name}, {os.cpu_count()} CPU cores visible"


def run_one(args: argparse.Namespace, precision: str, strategy: str) -> dict:
    """Trains `args.steps` steps in this process and returns the measured row."""
    import tensorflow as tf

    if strategy == "mirrored":
        cpu = tf.config.list_physical_devices("CPU")[0]
        tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
    from keras_sphereface.training import load_recipe, train

    with tempfile.TemporaryDirectory() as out:
        config = load_recipe(None, tfrecords=args.tfrecords, model=args.model, head="a-softmax",
                             head_options={"m": 4}, batch_size=args.batch_size, steps=args.steps, lr=0.01,
                             lr_schedule="constant", precision=precision, strategy=strategy, out=out,
                             log_every=args.log_every, checkpoint_every=10**9, shuffle_buffer=1024, seed=0,
                             progress=False)
        train(config)
        with open(Path(out) / "metrics.csv", newline="", encoding="utf-8") as handle:
            rows = [float(r["images_per_s"]) for r in csv.DictReader(handle) if r["images_per_s"]]
    measured = rows[args.warmup_intervals:] or rows[-1:]
    gpus = tf.config.list_physical_devices("GPU")
    return {"what": f"train step {args.model} + a-softmax (input pipeline included)",
            "images_per_s": round(sum(measured) / len(measured), 1),
            "hardware": f"{len(gpus)} GPU(s)" if gpus else _hardware(),
            "precision": precision, "batch": args.batch_size, "strategy": strategy,
            "replicas": 2 if strategy == "mirrored" else 1, "steps_measured": len(measured) * args.log_every,
            "tensorflow": tf.__version__}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tfrecords", default="out/lfw/devtrain-records/train-*.tfrecord",
                        help="Training shards (ksf make-tfrecords output with labels.json).")
    parser.add_argument("--model", default="sphere20")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--steps", type=int, default=40)
    parser.add_argument("--log-every", type=int, default=10)
    parser.add_argument("--warmup-intervals", type=int, default=1, help="Logged intervals left out.")
    parser.add_argument("--configs", nargs="*", default=list(DEFAULT_CONFIGS),
                        help="PRECISION:STRATEGY pairs (strategy one or mirrored).")
    parser.add_argument("--single", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.single:
        precision, strategy = args.single.split(":")
        print(json.dumps(run_one(args, precision, strategy)), flush=True)
        return
    for item in args.configs:
        command = [sys.executable, __file__, "--single", item, "--tfrecords", args.tfrecords, "--model", args.model,
                   "--batch-size", str(args.batch_size), "--steps", str(args.steps), "--log-every",
                   str(args.log_every), "--warmup-intervals", str(args.warmup_intervals)]
        env = {**os.environ, "PYTHONPATH": str(REPO_ROOT), "TF_CPP_MIN_LOG_LEVEL": "2"}
        run = subprocess.run(command, capture_output=True, text=True, env=env, cwd=REPO_ROOT)
        lines = [line for line in run.stdout.splitlines() if line.startswith("{")]
        if run.returncode != 0 or not lines:
            print(json.dumps({"what": item, "error": run.stderr.strip().splitlines()[-1:]}), flush=True)
        else:
            print(lines[-1], flush=True)


if __name__ == "__main__":
    main()
