"""`fold_batch_norms`: an inference copy of a model with each BatchNormalization folded into its layer.

In inference a `BatchNormalization` right after a convolution or `Dense` is a fixed affine map
per output channel, `y = gamma (z - mean) / sqrt(var + eps) + beta`, so it can be folded into
that layer's kernel and bias:

    factor = gamma / sqrt(var + eps)                       (one value per output channel)
    kernel' = kernel * factor                               (along the output-channel axis)
    bias'   = beta + (bias - mean) * factor                 (bias = 0 where there was none)

The copy computes the same embeddings (to float32 rounding) with one layer fewer per folded
pair: on TensorFlow a Keras `BatchNormalization` is about seven graph ops and two passes over
its input, which a served model pays on every call (MobileFaceNet: 50 of them;
`docs/performance.md` has the before/after). The export folds before tracing, so SavedModel,
TFLite and ONNX serve the folded graph. Training copies must keep their BatchNormalization:
this is for inference only.

Folded: a `BatchNormalization` over the last axis whose input is the output of a `Conv1D`,
`Conv2D`, `Conv3D`, `DepthwiseConv1D`, `DepthwiseConv2D` or `Dense` (channels last, no
activation, not quantized) that nothing else reads. Every other layer is copied unchanged, so a
normalization before a convolution (IResNet's blocks) stays, and so does one after a PReLU.
"""

from __future__ import annotations

import keras
import numpy as np

# Layers whose kernel's last axis is the output channel.
_OUTPUT_LAST_KERNELS = (keras.layers.Conv1D, keras.layers.Conv2D, keras.layers.Conv3D, keras.layers.Dense)
# Layers whose kernel is (..., input channels, depth multiplier), output channel `c * multiplier + m`.
_DEPTHWISE_KERNELS = (keras.layers.DepthwiseConv1D, keras.layers.DepthwiseConv2D)


def fold_batch_norms(model: keras.Model) -> keras.Model:
    """A copy of `model` for inference with every foldable BatchNormalization folded away.

    Args:
        model: `keras.Model`. A functional model (all zoo backbones are). A model of any other
            kind, or one with nothing to fold, is returned as it is.

    Returns:
        A new functional `keras.Model` with the same inputs, outputs, name and (inference)
        values, fewer layers and float32 weights copied from `model` (folded where paired), or
        `model` itself when nothing was folded. `model` is not changed.

    Example:
    >>> from keras_sphereface.models import MobileFaceNet
    >>> backbone = MobileFaceNet(input_shape=(112, 112, 3))
    >>> served = fold_batch_norms(backbone)
    >>> sum(isinstance(layer, keras.layers.BatchNormalization) for layer in served.layers)
    0
    """
    pairs = foldable_pairs(model)
    if not pairs:
        return model
    producers = {producer.name: norm for norm, producer in pairs}
    dropped = {norm.name for norm, _ in pairs}

    def clone_layer(layer):
        config = layer.get_config()
        if layer.name in producers:
            config["use_bias"] = True
        return layer.__class__.from_config(config)

    def call_layer(layer, *args, **kwargs):
        if layer.name in dropped:
            return args[0]  # the folded normalization: its input, which now carries its output
        return layer(*args, **kwargs)

    # Inputs named as the source's (a clone would rename unnamed ones), in the structure of `model.input`.
    inputs = keras.tree.map_structure(
        lambda tensor: keras.Input(batch_shape=tensor.shape, dtype=tensor.dtype,
                                   name=tensor._keras_history.operation.name),
        model.input,
    )
    folded = keras.models.clone_model(model, input_tensors=inputs, clone_function=clone_layer,
                                      call_function=call_layer)
    for layer in model.layers:
        if layer.name in dropped or not layer.weights:
            continue
        target = folded.get_layer(layer.name)
        if layer.name in producers:
            target.set_weights(_folded_weights(layer, producers[layer.name]))
        else:
            target.set_weights(layer.get_weights())
    return folded


def foldable_pairs(model: keras.Model) -> list[tuple[keras.layers.BatchNormalization, keras.layers.Layer]]:
    """The `(normalization, producing layer)` pairs `fold_batch_norms` folds, in graph order.

    Args:
        model: a `keras.Model`. Only functional models have pairs (others give `[]`).
    """
    nodes = [node for depth in sorted(getattr(model, "_nodes_by_depth", {}), reverse=True)
             for node in model._nodes_by_depth[depth]]
    readers: dict[int, int] = {}
    for node in nodes:
        for tensor in node.arguments.keras_tensors:
            readers[id(tensor)] = readers.get(id(tensor), 0) + 1
    for tensor in model.outputs if nodes else []:
        readers[id(tensor)] = readers.get(id(tensor), 0) + 1
    pairs = []
    for node in nodes:
        norm = node.operation
        if not isinstance(norm, keras.layers.BatchNormalization) or len(norm._inbound_nodes) != 1:
            continue
        tensors = node.arguments.keras_tensors
        if len(tensors) != 1 or not _normalizes_last_axis(norm, tensors[0]):
            continue
        producer = tensors[0]._keras_history.operation
        if readers.get(id(tensors[0])) == 1 and _can_absorb(producer):
            pairs.append((norm, producer))
    return pairs


def _normalizes_last_axis(norm, tensor) -> bool:
    axis = norm.axis if isinstance(norm.axis, int) else (norm.axis[0] if len(norm.axis) == 1 else None)
    return axis is not None and axis % len(tensor.shape) == len(tensor.shape) - 1


def _can_absorb(layer) -> bool:
    """A layer called once, with a kernel whose output channel is known, no activation, no quantization."""
    if not isinstance(layer, _OUTPUT_LAST_KERNELS + _DEPTHWISE_KERNELS) or len(layer._inbound_nodes) != 1:
        return False
    if getattr(layer, "data_format", "channels_last") != "channels_last":
        return False
    if getattr(layer.dtype_policy, "quantization_mode", None) is not None:
        return False
    return keras.activations.serialize(layer.activation) == "linear"


def _folded_weights(layer, norm) -> list[np.ndarray]:
    """`[kernel', bias']` of `layer` with `norm` folded in (computed in float64, returned float32)."""

    def values(variable, absent=0.0):
        return absent if variable is None else np.asarray(keras.ops.convert_to_numpy(variable), "float64")

    kernel = values(layer.kernel)
    bias = values(layer.bias if layer.use_bias else None)
    factor = values(norm.gamma, 1.0) / np.sqrt(values(norm.moving_variance) + norm.epsilon)
    # A depthwise kernel's last two axes (channels, multiplier) flatten to the output channel.
    per_output = factor.reshape(kernel.shape[-2:]) if isinstance(layer, _DEPTHWISE_KERNELS) else factor
    folded_bias = values(norm.beta) + (bias - values(norm.moving_mean)) * factor
    return [(kernel * per_output).astype("float32"), folded_bias.astype("float32")]
