"""A PyTorch Sphere-20 + A-Softmax (m=4) training step, the comparison point of `bench/train_step.py`.

Our own port for benchmarking only (not a dependency of the package): the network of the SphereFace
release (four stages of a 3x3 stride-2 convolution with PReLU and residual units of two 3x3
convolutions, `fc5` to 512) and A-Softmax with Caffe's lambda annealing, written the way the popular
PyTorch ports write it (normalized weights, `cos(m theta)` by the Chebyshev polynomial, `k`-piecewise
psi, the target logit mixed with lambda). Same shapes, loss and optimizer as the Keras step.

Usage: python bench/torch_reference.py [--batch 64] [--classes 10572] [--steps 6] [--threads N]
Prints one JSON line: images per second of the median step.
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import time

import numpy as np
import torch
from torch import nn

SPHERE20_UNITS = (1, 2, 4, 1)


class SphereNet(nn.Module):
    """SphereFace's residual CNN without BatchNorm; input `(batch, 3, 112, 96)`, output `(batch, 512)`."""

    def __init__(self, units=SPHERE20_UNITS, embedding_dim: int = 512):
        super().__init__()
        layers, channels = [], 3
        for filters, count in zip((64, 128, 256, 512), units, strict=True):
            layers += [nn.Conv2d(channels, filters, 3, 2, 1), nn.PReLU(filters)]
            for _ in range(count):
                layers.append(_Residual(filters))
            channels = filters
        self.features = nn.Sequential(*layers)
        self.fc5 = nn.Linear(512 * 7 * 6, embedding_dim)

    def forward(self, x):
        return self.fc5(torch.flatten(self.features(x), 1))


class _Residual(nn.Module):
    def __init__(self, channels: int):
        super().__init__()
        self.body = nn.Sequential(nn.Conv2d(channels, channels, 3, 1, 1), nn.PReLU(channels),
                                  nn.Conv2d(channels, channels, 3, 1, 1), nn.PReLU(channels))

    def forward(self, x):
        return x + self.body(x)


class ASoftmax(nn.Module):
    """A-Softmax (m=4) logits with Caffe's lambda = max(5, 1000 (1 + 0.12 t)^-1)."""

    def __init__(self, embedding_dim: int, classes: int, m: int = 4):
        super().__init__()
        self.weight = nn.Parameter(torch.empty(embedding_dim, classes))
        nn.init.xavier_uniform_(self.weight)
        self.m, self.iteration = m, 0

    def forward(self, x, labels):
        self.iteration += 1
        lam = max(5.0, 1000.0 * (1 + 0.12 * self.iteration) ** -1)
        w = nn.functional.normalize(self.weight, dim=0)
        norm = x.norm(dim=1, keepdim=True)
        inner = x @ w
        target_inner = inner.gather(1, labels[:, None])
        cos = (target_inner / norm.clamp_min(1e-12)).clamp(-1, 1)
        cos_m = 8 * cos**4 - 8 * cos**2 + 1
        k = torch.floor(torch.acos(cos) * self.m / math.pi)
        psi = (-1) ** k * cos_m - 2 * k
        target = (lam * target_inner + norm * psi) / (1 + lam)
        return inner.scatter(1, labels[:, None], target)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--classes", type=int, default=10572)
    parser.add_argument("--steps", type=int, default=6)
    parser.add_argument("--threads", type=int, default=0, help="torch.set_num_threads (0: keep the default)")
    parser.add_argument("--warmup", type=int, default=1, help="Untimed steps first.")
    parser.add_argument("--batch-file", help="An .npz with uint8 `images` (N, 112, 96, 3) and `labels` to step on "
                        "(as bench/train_step.py writes); default: uniform noise and random labels.")
    parser.add_argument("--bf16", action="store_true", help="torch.autocast(cpu, bfloat16), as mixed_bfloat16.")
    parser.add_argument("--channels-last", action="store_true",
                        help="torch.channels_last memory format for the network and its input (oneDNN's NHWC path).")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    # Denormal floats are flushed to zero, as TensorFlow's CPU kernels do: without it small bfloat16
    # gradients can slow PyTorch's CPU step several times over.
    torch.set_flush_denormal(True)
    torch.manual_seed(0)
    net, head = SphereNet(), ASoftmax(512, args.classes)
    decay = [p for n, p in net.named_parameters() if p.dim() > 1] + [head.weight]
    no_decay = [p for n, p in net.named_parameters() if p.dim() <= 1]
    optimizer = torch.optim.SGD([{"params": decay, "weight_decay": 5e-4}, {"params": no_decay, "weight_decay": 0}],
                                lr=0.01, momentum=0.9)
    if args.batch_file:
        batch = np.load(args.batch_file)
        pixels = torch.from_numpy(batch["images"][: args.batch].astype(np.float32)).permute(0, 3, 1, 2)
        images = ((pixels - 127.5) / 128.0).contiguous()
        labels = torch.from_numpy(batch["labels"][: args.batch].astype(np.int64))
    else:
        images = torch.rand(args.batch, 3, 112, 96) * 2 - 1
        labels = torch.randint(0, args.classes, (args.batch,))
    if args.channels_last:
        net, images = net.to(memory_format=torch.channels_last), images.contiguous(memory_format=torch.channels_last)
    times = []
    for step in range(args.warmup + args.steps):
        start = time.perf_counter()
        optimizer.zero_grad(set_to_none=True)
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=args.bf16):
            embeddings = net(images)
        # The head and the loss in float32, as keras_sphereface computes its heads.
        loss = nn.functional.cross_entropy(head(embeddings.float(), labels), labels)
        loss.backward()
        optimizer.step()
        if step >= args.warmup:
            times.append(time.perf_counter() - start)
    print(json.dumps({"framework": "pytorch", "torch": torch.__version__, "threads": torch.get_num_threads(),
                      "images_per_s": round(args.batch / statistics.median(times), 2),
                      "loss_finite": bool(torch.isfinite(loss))}))


if __name__ == "__main__":
    main()
