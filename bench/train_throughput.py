"""Training throughput of `ksf train` (images/s) against batch size, replicas and precision.

Each configuration runs the real training loop (`keras_sphereface.training.train`: input pipeline,
forward, backward, SGD update) in a fresh subprocess, because the logical CPU devices that
MirroredStrategy splits the batch over must be configured before TensorFlow starts. A figure is
the batch size over the median step time of `--steps` steps after `--warmup-steps` (tracing,
pipeline fill), read from the run's `metrics.csv` (logged every step).

    KSF_DATA_DIR=../shared/data python bench/train_throughput.py \
        [--batch-sizes 16,32,64,128,256] [--replicas 1,2] [--precisions float32,mixed_bfloat16]
    {"what": "ksf train sphere20 + a-softmax m=4", "images_per_s": ..., "batch": 64, "replicas": 1, ...}

The records are real LFW faces (aligned 112x96 crops, labels spread over 10,572 classes) written
by `bench/train_step.py`'s `prepare`, unless `--tfrecords` names shards of your own. Replicas are
logical CPU devices of one machine: they share its cores, so this measures the strategy's
overhead, not a speed-up.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]


def run_one(args: argparse.Namespace, precision: str, replicas: int, batch_size: int) -> dict:
    """Trains `warmup_steps + steps` steps in this process and returns the measured row."""
    import tensorflow as tf

    if replicas > 1:
        cpu = tf.config.list_physical_devices("CPU")[0]
        tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * replicas)
    from keras_sphereface.training import load_recipe, train

    with tempfile.TemporaryDirectory() as out:
        config = load_recipe(None, tfrecords=args.tfrecords, model=args.model, head="a-softmax",
                             head_options={"m": 4}, batch_size=batch_size, steps=args.warmup_steps + args.steps,
                             lr=0.01, lr_schedule="constant", precision=precision,
                             strategy="mirrored" if replicas > 1 else "one", out=out, log_every=1,
                             checkpoint_every=10**9, shuffle_buffer=256, seed=0, progress=False)
        train(config)
        with open(Path(out) / "metrics.csv", newline="", encoding="utf-8") as handle:
            rates = [float(r["images_per_s"]) for r in csv.DictReader(handle) if r["images_per_s"]]
    seconds = [batch_size / rate for rate in rates[args.warmup_steps:]]
    return {"what": f"ksf train {args.model} + a-softmax m=4 (input pipeline included)",
            "images_per_s": round(batch_size / statistics.median(seconds), 2), "precision": precision,
            "batch": batch_size, "replicas": replicas, "steps_timed": len(seconds)}


def _ints(text: str) -> list[int]:
    return [int(v) for v in text.split(",") if v]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tfrecords", help="Training shards with labels.json (default: LFW crops, 10,572 classes).")
    parser.add_argument("--model", default="sphere20")
    parser.add_argument("--batch-sizes", default="64")
    parser.add_argument("--replicas", default="1,2", help="MirroredStrategy replicas (logical CPU devices).")
    parser.add_argument("--precisions", default="float32,mixed_bfloat16")
    parser.add_argument("--steps", type=int, default=6)
    parser.add_argument("--warmup-steps", type=int, default=2)
    parser.add_argument("--single", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.single:
        precision, replicas, batch_size = args.single.split(":")
        print(json.dumps(run_one(args, precision, int(replicas), int(batch_size))), flush=True)
        return
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from _report import emit
    from train_step import prepare

    with tempfile.TemporaryDirectory(prefix="ksf-train-throughput-") as tmp:
        if not args.tfrecords:
            prepare(Path(tmp), classes=10572)
            args.tfrecords = str(Path(tmp) / "records" / "train-*.tfrecord")
        for precision in args.precisions.split(","):
            for replicas in _ints(args.replicas):
                for batch_size in _ints(args.batch_sizes):
                    command = [sys.executable, __file__, "--single", f"{precision}:{replicas}:{batch_size}",
                               "--tfrecords", args.tfrecords, "--model", args.model, "--steps", str(args.steps),
                               "--warmup-steps", str(args.warmup_steps)]
                    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT), "TF_CPP_MIN_LOG_LEVEL": "2"}
                    run = subprocess.run(command, capture_output=True, text=True, env=env, cwd=REPO_ROOT)
                    lines = [line for line in run.stdout.splitlines() if line.startswith("{")]
                    if run.returncode != 0 or not lines:
                        emit({"what": f"{precision}:{replicas}:{batch_size}",
                              "error": run.stderr.strip().splitlines()[-1:]})
                    else:
                        emit(json.loads(lines[-1]))


if __name__ == "__main__":
    main()
