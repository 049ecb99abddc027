"""Throughput of one training step (forward + backward + SGD update) of each margin head.

Embeddings are random `(batch, 512)` float32 and the heads have 10,575 classes (CASIA-WebFace),
so this measures the head alone, the part a margin adds to a plain softmax classifier. All heads
run in the same process, one after another, and are reported as ratios to a plain `Dense`
classifier so the figures compare across noisy machines.

Usage: python bench/margin_heads.py [--batch 256] [--classes 10575] [--steps 20]
Prints one JSON line (`bench/_report.py`: figures, then hardware, versions, backend, threads).
"""

from __future__ import annotations

import argparse
import time

import keras
import numpy as np
from _report import emit  # bench/_report.py: the header every bench script reports

from keras_sphereface.layers import ArcFace, CosFace, MarginInnerProduct, NormSoftmax, SphereFaceR


class _DenseHead(keras.layers.Layer):
    """Plain softmax classifier with the heads' call signature, as the baseline."""

    def __init__(self, units, **kwargs):
        super().__init__(**kwargs)
        self.dense = keras.layers.Dense(units, use_bias=False)

    def call(self, inputs, training=None):
        return self.dense(inputs[0])


def _steps_per_second(head, embeddings, labels, steps: int) -> float:
    inputs = [keras.Input(embeddings.shape[1:]), keras.Input((), dtype="int32")]
    model = keras.Model(inputs, head(inputs))
    model.compile(optimizer=keras.optimizers.SGD(0.01),
                  loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True), jit_compile=False)
    data = [embeddings, labels]
    model.train_on_batch(data, labels)  # trace and warm up
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
    args = parser.parse_args()

    rng = np.random.default_rng(0)
    embeddings = rng.normal(size=(args.batch, args.dim)).astype(np.float32)
    labels = rng.integers(0, args.classes, size=args.batch).astype(np.int32)
    heads = {
        "dense_softmax": lambda: _DenseHead(args.classes),
        "a_softmax_m4": lambda: MarginInnerProduct(args.classes, m=4),
        "a_softmax_m4_caffe_backward": lambda: MarginInnerProduct(args.classes, m=4, caffe_backward=True),
        "arcface": lambda: ArcFace(args.classes),
        "cosface": lambda: CosFace(args.classes),
        "norm_softmax": lambda: NormSoftmax(args.classes),
        "sphereface_r": lambda: SphereFaceR(args.classes),
    }
    rates = {name: _steps_per_second(make(), embeddings, labels, args.steps) * args.batch
             for name, make in heads.items()}
    baseline = rates["dense_softmax"]
    emit({
        "what": f"margin head training step ({args.classes} classes, {args.dim}-d embeddings)",
        "images_per_s": {name: round(rate, 1) for name, rate in rates.items()},
        "ratio_to_dense_softmax": {name: round(rate / baseline, 3) for name, rate in rates.items()},
        "batch": args.batch,
        "steps": args.steps,
    })


if __name__ == "__main__":
    main()
