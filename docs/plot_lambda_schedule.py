"""Draws the Caffe A-Softmax lambda schedule into docs/lambda_schedule.png.

Usage: python docs/plot_lambda_schedule.py [--out docs/lambda_schedule.png]
"""

from __future__ import annotations

import argparse
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np

from keras_sphereface.layers import caffe_lambda
from keras_sphereface.utils import atomic_path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--out", default=str(Path(__file__).with_name("lambda_schedule.png")))
    args = parser.parse_args()

    iterations = np.arange(1, 3001)
    fig, ax = plt.subplots(figsize=(6.4, 3.4), dpi=110)
    ax.plot(iterations, caffe_lambda(iterations), label="base=1000, gamma=0.12, power=1, lambda_min=5")
    ax.plot(iterations, caffe_lambda(iterations, power=2.0), "--", label="same, power=2")
    ax.set_yscale("log")
    ax.set_xlabel("training iteration")
    ax.set_ylabel("lambda")
    ax.axvline(1659, color="grey", lw=0.8)
    ax.annotate("lambda = 5 from 1659 on", (1659, 5), (1800, 40), arrowprops={"arrowstyle": "->"})
    ax.set_title("A-Softmax annealing: target = (lambda x.w + |x| psi) / (1 + lambda)")
    ax.legend(fontsize=8)
    fig.tight_layout()
    with atomic_path(args.out) as tmp:
        fig.savefig(tmp, format="png")
    print(args.out)


if __name__ == "__main__":
    main()
