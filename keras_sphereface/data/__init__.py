"""keras_sphereface.data: 5-point face alignment, TFRecord writing, tf.data input pipelines, `.bin` sets.

Alignment (`align`, NumPy + OpenCV only) is imported eagerly; the TensorFlow parts
(`write_tfrecords`, `tfrecord_dataset`) and the MTCNN detector are imported on first use, so
aligning faces never loads TensorFlow.

Conventions (see docs/data.md): images are RGB `uint8` `(height, width, 3)`; faces are
aligned to 112 (height) x 96 (width) with the SphereFace template by default; points are
`(x, y)` pixels with the centre of the top-left pixel at `(0, 0)`; the training input is
`(x - 127.5) / 128`.
"""

import importlib

from keras_sphereface.data.align import (
    ARCFACE_TEMPLATE,
    SPHEREFACE_TEMPLATE,
    align_face,
    get_template,
    load_image_rgb,
    read_landmarks,
    similarity_transform,
)
from keras_sphereface.data.align_folder import AlignReport, align_folder
from keras_sphereface.data.bin_sets import BinError, BinSet, read_bin, write_bin
from keras_sphereface.data.face_source import FaceSource

_LAZY = {
    "write_tfrecords": "keras_sphereface.data.records",
    "tfrecord_dataset": "keras_sphereface.data.dataset",
    "RecordSource": "keras_sphereface.data.record_source",
    "FaceDetector": "keras_sphereface.data.detect",
}


def __getattr__(name: str):
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'keras_sphereface.data' has no attribute {name!r}")


__all__ = [
    "ARCFACE_TEMPLATE",
    "SPHEREFACE_TEMPLATE",
    "AlignReport",
    "BinError",
    "BinSet",
    "FaceDetector",
    "FaceSource",
    "RecordSource",
    "align_face",
    "align_folder",
    "get_template",
    "load_image_rgb",
    "read_bin",
    "read_landmarks",
    "similarity_transform",
    "tfrecord_dataset",
    "write_bin",
    "write_tfrecords",
]
