"""Throughput of one training step (forward + backward + SGD update) of each margin head.

Embeddings are random `(batch, 512)` float32 and the heads have 10,575 classes (CASIA-WebFace),
so this measures the head alone, the part a margin adds to a plain softmax classifier. All heads
run in the same process, one after another, and are reported as ratios to a plain `Dense`
classifier so the figures compare across noisy machines.

With `--compare-formulation` the same process also times each head as it was written before
issue 11 (`<name>_before`): a `(batch, classes)` one-hot mask times the margin, `s` applied to the
logits, autodiff through the column norms. Same values, more passes over the logits and the kernel.

Usage: python bench/margin_heads.py [--batch 256] [--classes 10575] [--steps 20] [--rounds 1]
       [--compare-formulation]
Prints one JSON line (`bench/_report.py`: figures, then hardware, versions, backend, threads).
"""

from __future__ import annotations

import argparse
import statistics
import time

import keras
import numpy as np
from _report import emit  # bench/_report.py: the header every bench script reports
from keras import ops

from keras_sphereface.layers import (
    ArcFace,
    CombinedMargin,
    CosFace,
    MarginInnerProduct,
    NormSoftmax,
    SphereFaceR,
)
from keras_sphereface.layers.head_ops import NORM_EPSILON, l2_normalize, row_norm
from keras_sphereface.layers.margin_functions import caffe_lambda, chebyshev_psi, clamp_cosine


def _before_cosine_matmul(x, kernel):
    """`x @ kernel * rsqrt(colsum(kernel^2))` with autodiff through the norms (before issue 11)."""
    squared = ops.sum(ops.square(kernel), axis=0, keepdims=True)
    return ops.matmul(x, kernel) * ops.rsqrt(ops.maximum(squared, NORM_EPSILON))


def _before_one_hot(labels, units, dtype):
    return ops.one_hot(ops.reshape(labels, (-1,)), units, dtype=dtype)


def _before(cls):
    """`cls` with the margin logits as written before issue 11 (one-hot mask, `s` on the logits)."""

    class Before(cls):
        def plain_logits(self, embeddings, kernel):
            if isinstance(self, MarginInnerProduct):
                return _before_cosine_matmul(embeddings, kernel)
            return self.s * clamp_cosine(_before_cosine_matmul(l2_normalize(embeddings, -1), kernel))

        def margin_logits(self, embeddings, kernel, labels):
            if isinstance(self, MarginInnerProduct):
                new_iteration = self.iteration + 1
                self.iteration.assign(new_iteration)
                lam = ops.cast(caffe_lambda(new_iteration, self.base, self.gamma, self.power, self.lambda_min),
                               self.compute_dtype)
                inner = _before_cosine_matmul(embeddings, kernel)
                norm = row_norm(embeddings)
                target_inner = ops.take_along_axis(inner, labels, axis=1)
                psi = chebyshev_psi(clamp_cosine(target_inner / norm), self.m)
                target = (lam * target_inner + norm * psi) / (1.0 + lam)
                return inner + _before_one_hot(labels, self.units, inner.dtype) * (target - target_inner)
            cos_theta = clamp_cosine(_before_cosine_matmul(l2_normalize(embeddings, -1), kernel))
            target_cos = ops.take_along_axis(cos_theta, labels, axis=1)
            delta = self.target_logit(target_cos) - target_cos
            return self.s * (cos_theta + _before_one_hot(labels, self.units, delta.dtype) * delta)

    Before.__name__ = f"{cls.__name__}Before"
    return Before


def make_head(name: str, classes: int):
    """The head `name` of `HEADS` (or `<name>_before`, the pre-issue-11 formulation)."""
    before = name.endswith("_before")
    base = name[: -len("_before")] if before else name
    if base == "dense_softmax":
        return _DenseHead(classes)
    cls, kwargs = HEADS[base]
    return (_before(cls) if before else cls)(classes, **kwargs)


HEADS = {  # name: (class, arguments other than units); "dense_softmax" is the baseline
    "dense_softmax": (None, {}),
    "a_softmax_m4": (MarginInnerProduct, {"m": 4}),
    "a_softmax_m4_caffe_backward": (MarginInnerProduct, {"m": 4, "caffe_backward": True}),
    "arcface": (ArcFace, {}),
    "cosface": (CosFace, {}),
    "combined": (CombinedMargin, {}),
    "norm_softmax": (NormSoftmax, {}),
    "sphereface_r": (SphereFaceR, {}),
}


class _DenseHead(keras.layers.Layer):
    """Plain softmax classifier with the heads' call signature, as the baseline."""

    def __init__(self, units, **kwargs):
        super().__init__(**kwargs)
        self.dense = keras.layers.Dense(units, use_bias=False)

    def call(self, inputs, training=None):
        return self.dense(inputs[0])


def _compiled_model(head, embeddings, labels):
    inputs = [keras.Input(embeddings.shape[1:]), keras.Input((), dtype="int32")]
    model = keras.Model(inputs, head(inputs))
    model.compile(optimizer=keras.optimizers.SGD(0.01),
                  loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True), jit_compile=False)
    model.train_on_batch([embeddings, labels], labels)  # trace and warm up
    return model


def _steps_per_second(model, embeddings, labels, steps: int) -> float:
    data = [embeddings, labels]
    start = time.perf_counter()
    for _ in range(steps):
        model.train_on_batch(data, labels)
    return steps / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--batch", type=int, default=256)
    parser.add_argument("--classes", type=int, default=10575)
    parser.add_argument("--dim", type=int, default=512)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--rounds", type=int, default=1, help="alternated rounds of every head (median)")
    parser.add_argument("--compare-formulation", action="store_true",
                        help="also time every head as written before issue 11 (<name>_before)")
    args = parser.parse_args()

    rng = np.random.default_rng(0)
    embeddings = rng.normal(size=(args.batch, args.dim)).astype(np.float32)
    labels = rng.integers(0, args.classes, size=args.batch).astype(np.int32)
    names = []
    for name in HEADS:  # each head next to its former formulation, so load changes hit both alike
        names.append(name)
        if args.compare_formulation and name not in ("dense_softmax", "a_softmax_m4_caffe_backward"):
            names.append(f"{name}_before")  # (the Caffe backward pass was not changed)
    models = {name: _compiled_model(make_head(name, args.classes), embeddings, labels) for name in names}
    runs = {name: [] for name in names}
    for _ in range(args.rounds):  # alternated rounds; the median rate of each head is reported
        for name, model in models.items():
            runs[name].append(_steps_per_second(model, embeddings, labels, args.steps) * args.batch)
    rates = {name: statistics.median(values) for name, values in runs.items()}
    baseline = rates["dense_softmax"]
    emit({
        "what": f"margin head training step ({args.classes} classes, {args.dim}-d embeddings)",
        "images_per_s": {name: round(rate, 1) for name, rate in rates.items()},
        "ratio_to_dense_softmax": {name: round(rate / baseline, 3) for name, rate in rates.items()},
        "batch": args.batch,
        "steps": args.steps,
        "rounds": args.rounds,
        "xla": False,
    })


if __name__ == "__main__":
    main()
