"""Margin heads for face recognition, on `keras.ops` only (TensorFlow, JAX and PyTorch backends).

Every head is called as `head([embeddings, labels], training=...)`, keeps its class weights
as `kernel` `(embedding_dim, units)`, computes in float32 and returns `(batch_size, units)`
logits; with `training=False` or no labels the logits are margin-free.
"""

from keras_sphereface.layers.base import MarginHead, NormalizedHead
from keras_sphereface.layers.margin_functions import (
    arcface_target,
    caffe_lambda,
    chebyshev_psi,
    combined_margin_target,
    general_psi,
)
from keras_sphereface.layers.margin_inner_product import MarginInnerProduct
from keras_sphereface.layers.normalized_heads import (
    ArcFace,
    CombinedMargin,
    CosFace,
    NormSoftmax,
    SphereFaceR,
)

__all__ = [
    "ArcFace",
    "CombinedMargin",
    "CosFace",
    "MarginHead",
    "MarginInnerProduct",
    "NormSoftmax",
    "NormalizedHead",
    "SphereFaceR",
    "arcface_target",
    "caffe_lambda",
    "chebyshev_psi",
    "combined_margin_target",
    "general_psi",
]
