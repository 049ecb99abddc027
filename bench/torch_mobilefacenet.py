"""A PyTorch MobileFaceNet that loads the shared CASIA weights: the comparison point of `bench/embed.py`.

Our own port for benchmarking only (not a dependency of the package), written from the architecture
table of the weights' README: conv-BN-PReLU blocks, 15 inverted-residual bottlenecks, a global 7x6
depthwise convolution and a linear 1x1 convolution to 128-d. `load_shared_weights` reads the `.npz`
state dict with the package's safe reader and checks every tensor is used.

Usage: python bench/torch_mobilefacenet.py  (checks the port against the shared reference outputs)
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch
from torch import nn

GROUPS = ((2, 64, 5, 2), (4, 128, 1, 2), (2, 128, 6, 1), (4, 128, 1, 2), (2, 128, 2, 1))


class ConvBlock(nn.Module):
    """Conv (no bias) -> BatchNorm -> PReLU (omitted when `linear`)."""

    def __init__(self, cin, cout, kernel, stride=1, padding=0, groups=1, linear=False):
        super().__init__()
        self.conv = nn.Conv2d(cin, cout, kernel, stride, padding, groups=groups, bias=False)
        self.bn = nn.BatchNorm2d(cout, eps=1e-5)
        self.prelu = None if linear else nn.PReLU(cout)

    def forward(self, x):
        x = self.bn(self.conv(x))
        return x if self.prelu is None else self.prelu(x)


class Bottleneck(nn.Module):
    """1x1 expand, 3x3 depthwise (stride), 1x1 project; residual when the shape is kept."""

    def __init__(self, cin, cout, stride, expansion):
        super().__init__()
        hidden = cin * expansion
        self.residual = stride == 1 and cin == cout
        self.conv = nn.Sequential(
            nn.Conv2d(cin, hidden, 1, bias=False), nn.BatchNorm2d(hidden), nn.PReLU(hidden),
            nn.Conv2d(hidden, hidden, 3, stride, 1, groups=hidden, bias=False), nn.BatchNorm2d(hidden),
            nn.PReLU(hidden),
            nn.Conv2d(hidden, cout, 1, bias=False), nn.BatchNorm2d(cout),
        )

    def forward(self, x):
        return x + self.conv(x) if self.residual else self.conv(x)


class MobileFaceNet(nn.Module):
    """`(batch, 3, 112, 96)` preprocessed RGB -> `(batch, 128)` embeddings."""

    def __init__(self, embedding_dim: int = 128):
        super().__init__()
        self.conv1 = ConvBlock(3, 64, 3, 2, 1)
        self.dw_conv1 = ConvBlock(64, 64, 3, 1, 1, groups=64)
        blocks, channels = [], 64
        for expansion, cout, repeats, stride in GROUPS:
            for i in range(repeats):
                blocks.append(Bottleneck(channels, cout, stride if i == 0 else 1, expansion))
                channels = cout
        self.blocks = nn.Sequential(*blocks)
        self.conv2 = ConvBlock(128, 512, 1)
        self.linear7 = ConvBlock(512, 512, (7, 6), groups=512, linear=True)
        self.linear1 = ConvBlock(512, embedding_dim, 1, linear=True)

    def forward(self, x):
        x = self.conv2(self.blocks(self.dw_conv1(self.conv1(x))))
        return torch.flatten(self.linear1(self.linear7(x)), 1)


def load_shared_weights(model: MobileFaceNet, npz: str | os.PathLike) -> MobileFaceNet:
    """Loads the shared `.npz` state dict (strict: every tensor used, every parameter set)."""
    from keras_sphereface.models.convert.torch_npz import read_npz

    state = {name: torch.from_numpy(np.asarray(value)) for name, value in read_npz(npz).items()}
    model.load_state_dict(state, strict=False)
    missing = [k for k in model.state_dict() if k not in state and not k.endswith("num_batches_tracked")]
    unused = [k for k in state if k not in model.state_dict()]
    if missing or unused:
        raise ValueError(f"State dict mismatch: missing {missing[:5]}, unused {unused[:5]}")
    return model.eval()


def main() -> None:
    weights = Path(os.environ.get("KSF_WEIGHTS_DIR", "../shared/weights")) / "mobilefacenet-casia"
    model = load_shared_weights(MobileFaceNet(), weights / "mobilefacenet_casia_arcface.npz")
    with np.load(weights / "reference_io.npz", allow_pickle=False) as reference:
        images, expected = reference["images_rgb_uint8"], reference["embeddings"]
    x = torch.from_numpy(((images.astype(np.float32) - 127.5) / 128.0).transpose(0, 3, 1, 2).copy())
    with torch.no_grad():
        out = model(x).numpy()
    print(f"max abs difference to the reference outputs: {np.abs(out - expected).max():.2e}")


if __name__ == "__main__":
    main()
