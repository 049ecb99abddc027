"""Multiply-accumulate counts (MACs) of a model, from its layer shapes.

Counted: every `Conv2D` (`out_h * out_w * out_channels * kh * kw * in_channels / groups`), every
`DepthwiseConv2D` (`out_h * out_w * channels * multiplier * kh * kw`) and every `Dense`
(`in_features * units`, times any leading non-batch axes), in nested models too. Not counted: bias
additions, BatchNorm (foldable into the convolution), PReLU, residual additions and padding; they are
below 1% of the total for the models here. `zoo_table()` prints the table of `docs/models.md`:
`python -c "from keras_sphereface.models.complexity import zoo_table; print(zoo_table())"`.
"""

from __future__ import annotations

import math

import keras


def _layer_macs(layer) -> int:
    if isinstance(layer, keras.Model):
        return count_macs(layer)
    if isinstance(layer, keras.layers.DepthwiseConv2D):
        kh, kw = layer.kernel.shape[:2]
        out_h, out_w, channels = layer.output.shape[1:]
        return int(out_h * out_w * channels * kh * kw)
    if isinstance(layer, keras.layers.Conv2D):
        kh, kw, in_per_group, out = layer.kernel.shape
        out_h, out_w = layer.output.shape[1:3]
        return int(out_h * out_w * out * kh * kw * in_per_group)
    if isinstance(layer, keras.layers.Dense):
        leading = math.prod(int(v) for v in layer.output.shape[1:-1])
        return int(leading * layer.kernel.shape[0] * layer.kernel.shape[1])
    return 0


def count_macs(model: keras.Model) -> int:
    """Counts the multiply-accumulates of one forward pass of one example through `model`.

    Args:
        model: keras.Model. A built functional model (its layers' output shapes are known).

    Returns:
        int. MACs per example (conv, depthwise conv and dense layers; see the module docstring).
    """
    return sum(_layer_macs(layer) for layer in model.layers)


def zoo_table() -> str:
    """The Markdown rows (model, input, params, MACs) of `docs/models.md`, built from the builders."""
    from keras_sphereface import models

    builders = [
        ("Sphere4", (112, 96, 3)), ("Sphere10", (112, 96, 3)), ("Sphere20", (112, 96, 3)),
        ("Sphere36", (112, 96, 3)), ("Sphere64", (112, 96, 3)), ("Sphere20", (112, 112, 3)),
        ("MobileFaceNet", (112, 96, 3)), ("MobileFaceNet", (112, 112, 3)),
        ("IResNet18", (112, 112, 3)), ("IResNet34", (112, 112, 3)), ("IResNet50", (112, 112, 3)),
        ("IResNet100", (112, 112, 3)),
    ]
    rows = ["| model | input (HxW) | params | MACs |", "|---|---|---|---|"]
    for name, shape in builders:
        model = getattr(models, name)(input_shape=shape)
        rows.append(f"| {name} | {shape[0]}x{shape[1]} | {model.count_params():,} | "
                    f"{count_macs(model) / 1e9:.3f} G |")
        keras.backend.clear_session()
    return "\n".join(rows)
