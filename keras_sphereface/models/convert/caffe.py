"""Caffe `.caffemodel` <-> SphereNet, by layer name (the Keras SphereNet uses Caffe's layer names).

Layouts: Caffe convolution weights `(out, in, kh, kw)` become Keras `(kh, kw, in, out)`; PReLU slopes
`(channels,)` become `(1, 1, channels)`; `fc5`'s `(512, channels * height * width)` weight is reordered
from Caffe's channels-first flattening to Keras' `(height, width, channels)` flattening.

Input order: the SphereFace release was trained on BGR images (OpenCV/MATLAB-Caffe convention) scaled
by `(x - 127.5) / 128`. With `input_channel_order="BGR"` the converter reverses the input-channel axis
of the first convolution, so the Keras model takes RGB like every model of the zoo, and the scaling
is `preprocess_input`'s. `save_caffemodel` applies the inverse, so a round trip is exact.
"""

from __future__ import annotations

import os

import keras
import numpy as np

from keras_sphereface.models.convert import layouts
from keras_sphereface.models.convert.caffe_proto import CaffeLayer, read_caffemodel, write_caffemodel

_ORDERS = ("BGR", "RGB")


def _check_order(input_channel_order: str) -> None:
    if input_channel_order not in _ORDERS:
        raise ValueError(f"input_channel_order must be 'BGR' or 'RGB'. "
                         f"Received: input_channel_order={input_channel_order!r}")


def _reads_image(layer) -> bool:
    """Whether `layer` sees the model input directly (through padding only)."""
    parent = layer.input._keras_history.operation
    while isinstance(parent, keras.layers.ZeroPadding2D):
        parent = parent.input._keras_history.operation
    return isinstance(parent, keras.layers.InputLayer)


def _reshaped(blob: np.ndarray, shape: tuple, where: str) -> np.ndarray:
    # Legacy 4-D blobs store e.g. a bias as (1, 1, 1, n): accept any shape with the same values count.
    if blob.size != int(np.prod(shape)):
        raise ValueError(f"Caffe blob for {where} has shape {blob.shape}, expected {shape}. "
                         f"Received: shape={blob.shape}")
    return blob.reshape(shape)


def _keras_values(layer, caffe: CaffeLayer, flip_input: bool) -> list[np.ndarray]:
    """The Keras weights of `layer` from the Caffe layer of the same name."""
    if isinstance(layer, keras.layers.PReLU):
        return [_reshaped(caffe.blobs[0], tuple(layer.alpha.shape), f"{layer.name} slopes")]
    if isinstance(layer, keras.layers.Conv2D) and not isinstance(layer, keras.layers.DepthwiseConv2D):
        kh, kw, cin, cout = layer.kernel.shape
        kernel = layouts.conv_to_keras(_reshaped(caffe.blobs[0], (cout, cin, kh, kw), f"{layer.name} weights"))
        if flip_input:
            kernel = np.ascontiguousarray(kernel[:, :, ::-1, :])
    elif isinstance(layer, keras.layers.Dense):
        fan_in, units = layer.kernel.shape
        weight = _reshaped(caffe.blobs[0], (units, fan_in), f"{layer.name} weights")
        kernel = layouts.dense_to_keras(weight, layouts.flattened_input_shape(layer))
    else:
        raise ValueError(f"No Caffe conversion for a {layer.__class__.__name__} layer. "
                         f"Received: layer={layer.name!r}")
    values = [kernel]
    if layer.use_bias:
        if len(caffe.blobs) < 2:
            raise ValueError(f"Caffe layer {caffe.name!r} has no bias blob. Received: {len(caffe.blobs)} blobs")
        values.append(_reshaped(caffe.blobs[1], (kernel.shape[-1],), f"{layer.name} bias"))
    return values


def load_caffemodel(model: keras.Model, path: str | os.PathLike, input_channel_order: str = "BGR") -> list[str]:
    """Loads a SphereFace `.caffemodel` into a SphereNet built with `weights=None`.

    Args:
        model: keras.Model. E.g. `Sphere20()`; every weighted layer must have a Caffe layer of its name.
        path: str or path-like. The caffemodel (e.g. `sphereface_model.caffemodel`).
        input_channel_order: str. `"BGR"` (the SphereFace release) folds the BGR->RGB swap into the
            first convolution; `"RGB"` loads it unchanged.

    Returns:
        The names of the Caffe layers with weights that the model does not use (e.g. the training
        head `fc6`).

    Raises:
        ValueError: a layer is missing or a blob has the wrong size.
    """
    _check_order(input_channel_order)
    _, caffe_layers = read_caffemodel(path)
    by_name = {layer.name: layer for layer in caffe_layers if layer.blobs}
    used = set()
    for layer in model.layers:
        if not layer.weights:
            continue
        if layer.name not in by_name:
            raise ValueError(f"{path} has no layer {layer.name!r} with weights (wrong depth?). "
                             f"Received: layers={sorted(by_name)}")
        flip = input_channel_order == "BGR" and isinstance(layer, keras.layers.Conv2D) and _reads_image(layer)
        layer.set_weights(_keras_values(layer, by_name[layer.name], flip))
        used.add(layer.name)
    return [name for name in by_name if name not in used]


def save_caffemodel(model: keras.Model, path: str | os.PathLike, input_channel_order: str = "BGR") -> None:
    """Writes a SphereNet's weights as a `.caffemodel` (layer names, Caffe layouts), atomically.

    The inverse of `load_caffemodel`: with `"BGR"` the first convolution is written for BGR input, as
    the SphereFace release expects. Only weights are written (no layer parameters); Caffe copies
    weights by layer name, so the file pairs with the release's prototxt.

    Args:
        model: keras.Model. A SphereNet.
        path: str or path-like. Output `.caffemodel`.
        input_channel_order: str. `"BGR"` or `"RGB"`.
    """
    _check_order(input_channel_order)
    layers = []
    for layer in model.layers:
        if not layer.weights:
            continue
        if isinstance(layer, keras.layers.PReLU):
            layers.append(CaffeLayer(layer.name, "PReLU", [np.asarray(layer.alpha).reshape(-1)]))
            continue
        kernel = np.asarray(layer.kernel)
        if isinstance(layer, keras.layers.Dense):
            kind, blob = "InnerProduct", layouts.dense_from_keras(kernel, layouts.flattened_input_shape(layer))
        elif isinstance(layer, keras.layers.Conv2D) and not isinstance(layer, keras.layers.DepthwiseConv2D):
            if input_channel_order == "BGR" and _reads_image(layer):
                kernel = kernel[:, :, ::-1, :]
            kind, blob = "Convolution", layouts.conv_from_keras(kernel)
        else:
            raise ValueError(f"No Caffe export for a {layer.__class__.__name__} layer. "
                             f"Received: layer={layer.name!r}")
        blobs = [blob] + ([np.asarray(layer.bias)] if layer.use_bias else [])
        layers.append(CaffeLayer(layer.name, kind, blobs))
    write_caffemodel(path, model.name, layers)
