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

from keras_sphereface.models.zoo import ZOO

#: Sizes shown in the table besides each model's default input size.
TABLE_EXTRA_SIZES = {"sphere20": ((112, 112),), "mobilefacenet": ((112, 112),)}


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
    """The Markdown rows (model, input, params, MACs) of `docs/models.md`, built from the zoo.

    Each model at its default input size, and at `TABLE_EXTRA_SIZES`.
    """
    rows = ["| model | input (HxW) | params | MACs |", "|---|---|---|---|"]
    for spec in ZOO.values():
        for size in (spec.input_size, *TABLE_EXTRA_SIZES.get(spec.name, ())):
            model = spec.build(input_shape=(*size, 3))
            rows.append(f"| {spec.builder_name} | {size[0]}x{size[1]} | {model.count_params():,} | "
                        f"{count_macs(model) / 1e9:.3f} G |")
            keras.backend.clear_session()
    return "\n".join(rows)
