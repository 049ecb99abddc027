"""Training steps on an accelerator under the JAX backend: images/s and the fraction of peak FLOP/s.

The performance issue's GPU measurement: Sphere-20 + A-Softmax m=4 and IResNet-50 + ArcFace, 10,572
classes (CASIA-WebFace), bfloat16 (`mixed_bfloat16`: bf16 compute, float32 weights, heads in
float32), batch 256, SGD momentum 0.9 with weight decay 5e-4. One jitted step (`model.stateless_call`,
`jax.value_and_grad`, `optimizer.stateless_apply`), inputs resident on the device, median of `--steps`
timed steps after `--warmup` steps. FLOP per step = 3 x 2 x (backbone MACs from
`keras_sphereface.models.count_macs` + head `embedding_dim x classes`) x batch: forward, and a
backward of twice the forward. The fraction of peak divides by `--peak-tflops`, or by the dense
bf16 peak of a known device (`PEAK_BF16_TFLOPS`); it stays null for others (CPU included).

    KERAS_BACKEND=jax python bench/gpu_step.py [--models sphere20,iresnet50] [--batch 256]
        [--steps 20] [--warmup 3] [--precision mixed_bfloat16] [--peak-tflops 989]

TensorFlow is not needed (the zoo and heads are Keras-only). On the lent GPU machine (Python 3.12 with
JAX, no TensorFlow, no Keras), Keras and the two packages it needs that the machine lacks travel as
wheels in `.whl/` (`docs/performance.md`, "GPU"). One JSON line per model (`bench/_report.py` header).
On a CPU, `--batch 2 --steps 1 --warmup 1` checks that the script runs.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

os.environ.setdefault("KERAS_BACKEND", "jax")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import keras
import numpy as np

from keras_sphereface.layers import ArcFace, MarginInnerProduct
from keras_sphereface.models import build_training_model, count_macs, get_model_spec

# Dense (no sparsity) bfloat16 tensor-core peaks from the vendors' data sheets, TFLOP/s.
PEAK_BF16_TFLOPS = {"H100": 989.4, "H200": 989.4, "A100": 312.0, "L4": 121.0}
HEADS = {"sphere20": lambda classes: MarginInnerProduct(classes, m=4),
         "iresnet50": lambda classes: ArcFace(classes)}


def _peak_tflops(device_kind: str, given: float | None) -> float | None:
    if given:
        return given
    return next((peak for name, peak in PEAK_BF16_TFLOPS.items() if name in device_kind), None)


def _jitted_step(model, optimizer):
    """`step(state, images, labels) -> (state, loss)`: one SGD step, jitted, state donated."""
    import jax

    def loss_fn(trainable, non_trainable, images, labels):
        logits, non_trainable = model.stateless_call(trainable, non_trainable, [images, labels], training=True)
        per_example = keras.losses.sparse_categorical_crossentropy(labels, logits, from_logits=True)
        return keras.ops.mean(per_example), non_trainable

    gradient_fn = jax.value_and_grad(loss_fn, has_aux=True)

    def step(state, images, labels):
        trainable, non_trainable, optimizer_variables = state
        (loss, non_trainable), grads = gradient_fn(trainable, non_trainable, images, labels)
        trainable, optimizer_variables = optimizer.stateless_apply(optimizer_variables, grads, trainable)
        return (trainable, non_trainable, optimizer_variables), loss

    return jax.jit(step, donate_argnums=0)


def measure(name: str, batch: int, classes: int, steps: int, warmup: int, precision: str) -> dict:
    """Builds `name` + its head under `precision` and times `steps` jitted training steps."""
    import jax

    keras.config.set_dtype_policy(precision)
    spec = get_model_spec(name)
    backbone = spec.build()
    model = build_training_model(backbone, HEADS[name](classes))
    optimizer = keras.optimizers.SGD(0.1, momentum=0.9, weight_decay=5e-4)
    optimizer.build(model.trainable_variables)
    state = ([v.value for v in model.trainable_variables], [v.value for v in model.non_trainable_variables],
             [v.value for v in optimizer.variables])
    rng = np.random.default_rng(0)
    height, width = spec.input_size
    images = jax.device_put(rng.uniform(-1, 1, (batch, height, width, 3)).astype("float32"))
    labels = jax.device_put(rng.integers(0, classes, (batch,)).astype("int32"))
    step = _jitted_step(model, optimizer)
    compile_started = time.perf_counter()
    for _ in range(warmup):
        state, loss = step(state, images, labels)
    loss.block_until_ready()
    compile_and_warmup_s = time.perf_counter() - compile_started
    times = []
    for _ in range(steps):
        started = time.perf_counter()
        state, loss = step(state, images, labels)
        loss.block_until_ready()
        times.append(time.perf_counter() - started)
    seconds = statistics.median(times)
    embedding_dim = int(backbone.output.shape[-1])
    macs = count_macs(backbone) + embedding_dim * classes
    flop_per_step = 3 * 2 * macs * batch
    device = jax.devices()[0]
    return {
        "what": f"train step {name} + {'a-softmax m=4' if name == 'sphere20' else 'arcface'}",
        "model": name,
        "precision": precision,
        "batch": batch,
        "classes": classes,
        "images_per_s": round(batch / seconds, 1),
        "step_ms": round(seconds * 1e3, 2),
        "tflop_per_s": round(flop_per_step / seconds / 1e12, 2),
        "macs_per_image": macs,
        "device": f"{device.platform}: {device.device_kind}",
        "final_loss": round(float(loss), 4),
        "compile_and_warmup_s": round(compile_and_warmup_s, 1),
        "steps": steps,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", default="sphere20,iresnet50")
    parser.add_argument("--batch", type=int, default=256)
    parser.add_argument("--classes", type=int, default=10572)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--precision", default="mixed_bfloat16", choices=("mixed_bfloat16", "float32"))
    parser.add_argument("--peak-tflops", type=float, default=None,
                        help="the device's peak for --precision; default: PEAK_BF16_TFLOPS for bf16")
    args = parser.parse_args()
    if keras.backend.backend() != "jax":
        sys.exit(f"Run with KERAS_BACKEND=jax (got {keras.backend.backend()!r}).")
    unknown = set(args.models.split(",")) - set(HEADS)
    if unknown:
        sys.exit(f"--models takes {sorted(HEADS)}. Received: {sorted(unknown)}")
    from _report import emit

    for name in args.models.split(","):
        figures = measure(name, args.batch, args.classes, args.steps, args.warmup, args.precision)
        bf16_peak = args.precision == "mixed_bfloat16" or args.peak_tflops
        peak = _peak_tflops(figures["device"], args.peak_tflops) if bf16_peak else None
        figures["peak_tflop_per_s"] = peak
        figures["fraction_of_peak"] = round(figures["tflop_per_s"] / peak, 3) if peak else None
        emit(figures)


if __name__ == "__main__":
    main()
