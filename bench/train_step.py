"""One SphereFace training step, keras_sphereface against PyTorch, in one run: images/s and ratios.

The step: Sphere-20 at 112x96, A-Softmax m=4 over 10,572 classes (CASIA-WebFace), batch 64,
softmax cross-entropy, backward, SGD with momentum 0.9 and weight decay 5e-4. Variants, each in
its own process with the same thread count, alternated over `--rounds` rounds:

    tf          `keras_sphereface.training.train` (the `ksf train` code path: TFRecord input
                pipeline, `tf.distribute` step, SGD) on TensorFlow, `jit_compile=False`;
    tf_keras_prelu  the same with `keras.layers.PReLU` in place of the zoo's `PReLU` (its
                training gradient written out): the before/after of that change in one run;
    tf_xla      the same as `tf` with `jit_compile=True` (forward and backward compiled by XLA);
    jax         the same Keras model and head on the JAX backend through `train_on_batch`
                (Keras' jitted JAX train step; JAX has no `tf.distribute`, so not `ksf train`);
    pytorch     `bench/torch_reference.py`: the same network and loss written in PyTorch, eager.

The TF variants read real LFW faces (aligned 112x96 crops written as TFRecords once, labels
spread over the 10,572 classes); the JAX and PyTorch variants step on one batch of the same crops.
A variant's figure is the batch size over its median step time (`--steps` timed steps after
2 warm-up steps); the run's figure is the median over rounds, and `ratio_to_pytorch` divides by
the PyTorch figure of the same run.

    KSF_DATA_DIR=../shared/data python bench/train_step.py [--rounds 2] [--steps 6] [--batch 64]
        [--precisions float32,mixed_bfloat16] [--variants tf,tf_xla,jax,pytorch] [--threads 2]

One JSON line per variant and a summary line (`bench/_report.py` header). PyTorch comes from
`pip install torch==2.13.0` (CPU build; not a dependency of the package).
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
import time
from pathlib import Path

import numpy as np

REPO_ROOT = Path(__file__).resolve().parents[1]
VARIANTS = ("tf", "tf_keras_prelu", "tf_xla", "jax", "pytorch")
PRECISIONS = ("float32", "mixed_bfloat16")
WARMUP_STEPS = 2
NUM_EXAMPLES = 512


def _faces(count: int) -> tuple[np.ndarray, np.ndarray]:
    """`count` aligned 112x96 RGB crops of LFW (uint8) and labels spread over the classes; noise without data."""
    data_dir = os.environ.get("KSF_DATA_DIR")
    rng = np.random.default_rng(0)
    if not data_dir:
        print("KSF_DATA_DIR is not set: stepping on noise images instead of LFW faces", file=sys.stderr)
        return rng.integers(0, 256, (count, 112, 96, 3), dtype=np.uint8), np.arange(count)
    import cv2

    from keras_sphereface.data.align import align_face
    from keras_sphereface.data.landmarks import read_landmarks

    lfw = Path(data_dir) / "lfw"
    points = read_landmarks(lfw / "landmarks.txt")
    crops = []
    for name in sorted(points)[:count]:
        image = cv2.cvtColor(cv2.imread(str(lfw / "images" / name)), cv2.COLOR_BGR2RGB)
        crops.append(align_face(image, points[name]))
    return np.stack(crops), np.arange(len(crops))


def prepare(root: Path, classes: int) -> None:
    """Writes `records/train-*.tfrecord` (+ labels.json, manifest.json) and `batch.npz` under `root`."""
    import tensorflow as tf

    from keras_sphereface.data.schema import make_example

    crops, index = _faces(NUM_EXAMPLES)
    labels = (index * 7919) % classes  # spread over the whole label range
    records = root / "records"
    records.mkdir(parents=True)
    shards = [[], []]
    for i, (crop, label) in enumerate(zip(crops, labels, strict=True)):
        jpeg = tf.io.encode_jpeg(crop, quality=95).numpy()
        shards[i % 2].append(make_example(jpeg, int(label), f"class{label}", f"face{i}.jpg", 112, 96))
    manifest = {"splits": {"train": {"shards": []}}, "num_classes": classes}
    for number, examples in enumerate(shards):
        name = f"train-{number:05d}-of-00002.tfrecord"
        with tf.io.TFRecordWriter(str(records / name)) as writer:
            for example in examples:
                writer.write(example)
        manifest["splits"]["train"]["shards"].append({"file": name, "num_examples": len(examples)})
    (records / "labels.json").write_text(json.dumps({"num_classes": classes}), encoding="utf-8")
    (records / "manifest.json").write_text(json.dumps(manifest), encoding="utf-8")
    np.savez(root / "batch.npz", images=crops, labels=labels.astype(np.int32))


def _median_rate(seconds: list[float], batch: int) -> float:
    return batch / statistics.median(seconds)


def run_tf(root: Path, args, jit_compile: bool) -> dict:
    """`train(config)` for WARMUP_STEPS + steps steps; step times from its metrics.csv (log_every=1)."""
    from keras_sphereface.training import load_recipe, train

    out = root / f"run-{os.getpid()}"
    config = load_recipe("casia_sphere20_asoftmax", tfrecords=str(root / "records" / "train-*.tfrecord"),
                         batch_size=args.batch, steps=WARMUP_STEPS + args.steps, lr=0.01,
                         lr_schedule="constant", precision=args.precision, jit_compile=jit_compile,
                         strategy="one", out=str(out), resume=False, log_every=1,
                         checkpoint_every=10**9, shuffle_buffer=256, seed=0, progress=False)
    train(config)
    with open(out / "metrics.csv", newline="", encoding="utf-8") as handle:
        rates = [float(row["images_per_s"]) for row in csv.DictReader(handle) if row["images_per_s"]]
    seconds = [args.batch / rate for rate in rates[WARMUP_STEPS:]]
    return {"images_per_s": _median_rate(seconds, args.batch), "steps_timed": len(seconds)}


def run_jax(root: Path, args) -> dict:
    """The same Keras model and head on the JAX backend, `train_on_batch` (jitted)."""
    import keras

    from keras_sphereface.layers import MarginInnerProduct
    from keras_sphereface.models import build_model, build_training_model
    from keras_sphereface.models.preprocessing import scale_pixels

    if args.precision != "float32":
        keras.mixed_precision.set_global_policy(args.precision)
    batch = np.load(root / "batch.npz")
    images = np.asarray(scale_pixels(batch["images"][: args.batch].astype("float32")))
    labels = batch["labels"][: args.batch]
    keras.utils.set_random_seed(0)
    model = build_training_model(build_model("sphere20"), MarginInnerProduct(args.classes, m=4))
    model.compile(optimizer=keras.optimizers.SGD(0.01, momentum=0.9, weight_decay=5e-4),
                  loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    seconds = []
    for step in range(WARMUP_STEPS + args.steps):
        start = time.perf_counter()
        loss = model.train_on_batch([images, labels], labels)
        if step >= WARMUP_STEPS:
            seconds.append(time.perf_counter() - start)
    return {"images_per_s": _median_rate(seconds, args.batch), "steps_timed": len(seconds),
            "loss_finite": bool(np.isfinite(loss))}


def _child(args) -> None:
    root = Path(args.root)
    if args.child == "tf_keras_prelu":
        import keras

        from keras_sphereface.models import _common

        _common.PReLU = keras.layers.PReLU  # the builders' PReLU before it had its own gradient
    if args.child in ("tf", "tf_keras_prelu", "tf_xla"):
        figures = run_tf(root, args, jit_compile=args.child == "tf_xla")
    else:
        figures = run_jax(root, args)
    print(json.dumps(figures), flush=True)


def _command(variant: str, precision: str, args, root: Path) -> tuple[list[str], dict]:
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT), "TF_CPP_MIN_LOG_LEVEL": "2"}
    if variant == "pytorch":
        command = [sys.executable, str(REPO_ROOT / "bench" / "torch_reference.py"), "--batch", str(args.batch),
                   "--classes", str(args.classes), "--steps", str(args.steps), "--threads", str(args.threads),
                   "--batch-file", str(root / "batch.npz"), "--warmup", str(WARMUP_STEPS)]
        if precision == "mixed_bfloat16":
            command.append("--bf16")
        return command, env
    env["KERAS_BACKEND"] = "jax" if variant == "jax" else "tensorflow"
    if variant != "jax":
        env.update(TF_NUM_INTRAOP_THREADS=str(args.threads), TF_NUM_INTEROP_THREADS="1")
    command = [sys.executable, __file__, "--child", variant, "--root", str(root), "--batch", str(args.batch),
               "--classes", str(args.classes), "--steps", str(args.steps), "--precision", precision]
    return command, env


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--steps", type=int, default=6, help="Timed steps per variant and round.")
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--classes", type=int, default=10572)
    parser.add_argument("--precisions", default=",".join(PRECISIONS),
                        help=f"Comma-separated, from {list(PRECISIONS)}.")
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--variants", default=",".join(VARIANTS))
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--root", help=argparse.SUPPRESS)
    parser.add_argument("--precision", default="float32", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        _child(args)
        return
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from _report import emit

    variants = [v for v in args.variants.split(",") if v]
    precisions = [p for p in args.precisions.split(",") if p]
    unknown = sorted(set(variants) - set(VARIANTS)) + sorted(set(precisions) - set(PRECISIONS))
    if unknown:
        parser.error(f"unknown variants or precisions {unknown}; choose from {list(VARIANTS)} and {list(PRECISIONS)}")
    runs = [(v, p) for p in precisions for v in variants]
    rates: dict[tuple[str, str], list[float]] = {run: [] for run in runs}
    with tempfile.TemporaryDirectory(prefix="ksf-train-step-") as tmp:
        root = Path(tmp)
        prepare(root, args.classes)
        for round_index in range(args.rounds):
            for variant, precision in runs if round_index % 2 == 0 else runs[::-1]:
                command, env = _command(variant, precision, args, root)
                done = subprocess.run(command, capture_output=True, text=True, env=env, cwd=REPO_ROOT)
                lines = [line for line in done.stdout.splitlines() if line.startswith("{")]
                if done.returncode or not lines:
                    raise SystemExit(f"{variant} {precision} failed:\n{done.stderr[-3000:]}")
                rates[(variant, precision)].append(json.loads(lines[-1])["images_per_s"])
    figures = {run: round(statistics.median(r), 2) for run, r in rates.items()}
    for (variant, precision), rate in figures.items():
        emit({"what": "train step sphere20 + a-softmax m=4", "variant": variant,
              "framework": "pytorch" if variant == "pytorch" else "keras_sphereface",
              "precision": precision, "batch": args.batch, "classes": args.classes, "images_per_s": rate,
              "rounds": [round(r, 2) for r in rates[(variant, precision)]], "intra_op_threads": args.threads})
    for precision in precisions:
        reference = figures.get(("pytorch", precision))
        if reference:
            emit({"what": "train step ratios to pytorch at the same precision", "precision": precision,
                  "batch": args.batch, "ratio_to_pytorch": {v: round(figures[(v, precision)] / reference, 3)
                                                            for v in variants}})


if __name__ == "__main__":
    main()
