"""keras_sphereface: deep hypersphere face recognition for Keras 3.

Subpackages:
    layers: margin heads (`MarginInnerProduct` A-Softmax exactly as Caffe, ArcFace, CosFace, ...).
    models: Sphere-4/10/20/36/64, MobileFaceNet, IResNet builders and pretrained weights.
    data: 5-point face alignment, TFRecord writing, tf.data input pipelines.
    evaluation: the LFW protocol, ROC, Angular Fisher Score.

Subpackages are imported on first use, so `import keras_sphereface` stays cheap and does
not pull in a deep-learning backend until one is needed.
"""

import importlib

from keras_sphereface.version import __version__

_SUBPACKAGES = ("data", "evaluation", "layers", "models", "utils")


def __getattr__(name: str):
    if name in _SUBPACKAGES:
        return importlib.import_module(f"keras_sphereface.{name}")
    raise AttributeError(f"module 'keras_sphereface' has no attribute {name!r}")


__all__ = ["__version__", *_SUBPACKAGES]
