"""Keras layer name -> PyTorch state-dict prefix, per checkpoint layout (the converters' name maps).

The layouts are the `torch_layout` of the zoo's model specs (`keras_sphereface.models.zoo`):
`"mobilefacenet"` (Xiaoccer/MobileFaceNet_Pytorch) and `"iresnet"` (insightface `arcface_torch`).
"""

from __future__ import annotations

import re
from collections.abc import Callable

import keras

_BLOCK_PARTS = {"expand_conv": 0, "expand_bn": 1, "expand_prelu": 2, "dw_conv": 3, "dw_bn": 4,
                "dw_prelu": 5, "project_conv": 6, "project_bn": 7}


def mobilefacenet_layer_names(model: keras.Model) -> dict[str, str]:
    """Maps each weighted Keras layer name to its PyTorch state-dict prefix.

    `conv1_conv` -> `conv1.conv`, `block3_dw_bn` -> `blocks.3.conv.4`, `linear1_bn` -> `linear1.bn`.
    """
    names = {}
    for layer in model.layers:
        if not layer.weights:
            continue
        block = re.fullmatch(r"block(\d+)_(\w+)", layer.name)
        if block:
            names[layer.name] = f"blocks.{block[1]}.conv.{_BLOCK_PARTS[block[2]]}"
        else:
            stem, part = layer.name.rsplit("_", 1)
            names[layer.name] = f"{stem}.{part}"
    return names


def iresnet_layer_names(model: keras.Model) -> dict[str, str]:
    """Maps each weighted Keras layer name to its insightface PyTorch module prefix.

    `layer2_0_conv1` -> `layer2.0.conv1`, `layer2_0_downsample_conv` -> `layer2.0.downsample.0`,
    `layer2_0_downsample_bn` -> `layer2.0.downsample.1`, `features` -> `features`.
    """
    names = {}
    for layer in model.layers:
        if not layer.weights:
            continue
        unit = re.fullmatch(r"(layer\d+)_(\d+)_(\w+)", layer.name)
        if unit is None:
            names[layer.name] = layer.name
            continue
        part = {"downsample_conv": "downsample.0", "downsample_bn": "downsample.1"}.get(unit[3], unit[3])
        names[layer.name] = f"{unit[1]}.{unit[2]}.{part}"
    return names


#: Layout name -> function mapping a model's weighted layers to PyTorch module prefixes.
TORCH_LAYOUTS: dict[str, Callable[[keras.Model], dict[str, str]]] = {
    "mobilefacenet": mobilefacenet_layer_names,
    "iresnet": iresnet_layer_names,
}
