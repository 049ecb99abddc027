"""The TFRecord schema of face examples: one home for the feature keys, their types and defaults.

Written by `records.write_tfrecords` (`ksf make-tfrecords`) through `make_example`; read by the
training pipeline (`dataset.tfrecord_dataset`) and by `record_source.read_face_records` through
`parse_spec`. Each example holds the image file's bytes exactly as stored:

| key | type | value |
|---|---|---|
| `image` | bytes | the encoded JPEG or PNG |
| `format` | bytes | `b"jpeg"` or `b"png"` |
| `height`, `width` | int64 | the decoded image size in pixels |
| `label` | int64 | the class index, `0 .. num_classes - 1` |
| `identity` | bytes | the identity name (UTF-8) |
| `path` | bytes | the source path (UTF-8), as the folder tree or list file names it |
| `landmarks` | float32 x 10 | optional: `x1 y1 ... x5 y5` in pixels of the stored image |
"""

from __future__ import annotations

import numpy as np
import tensorflow as tf

from keras_sphereface.data.images import image_format

FEATURES = ("image", "format", "height", "width", "label", "identity", "path", "landmarks")
#: Landmarks absent from an example read back as NaN (then it cannot be aligned on the fly).
MISSING_LANDMARKS = (float("nan"),) * 10


def parse_spec(keys: tuple[str, ...] = FEATURES) -> dict[str, tf.io.FixedLenFeature]:
    """The `tf.io.parse_single_example` spec of `keys` (a subset of `FEATURES`).

    `image` and `label` are required; the other keys default to empty / 0 / NaN landmarks.
    """
    specs = {
        "image": tf.io.FixedLenFeature([], tf.string),
        "format": tf.io.FixedLenFeature([], tf.string, default_value=""),
        "height": tf.io.FixedLenFeature([], tf.int64, default_value=0),
        "width": tf.io.FixedLenFeature([], tf.int64, default_value=0),
        "label": tf.io.FixedLenFeature([], tf.int64),
        "identity": tf.io.FixedLenFeature([], tf.string, default_value=""),
        "path": tf.io.FixedLenFeature([], tf.string, default_value=""),
        "landmarks": tf.io.FixedLenFeature([10], tf.float32, default_value=list(MISSING_LANDMARKS)),
    }
    unknown = [key for key in keys if key not in specs]
    if unknown:
        raise ValueError(f"Unknown TFRecord features {unknown}; the schema has {list(FEATURES)}. "
                         f"Received: keys={keys!r}")
    return {key: specs[key] for key in keys}


def _bytes_feature(value: bytes) -> tf.train.Feature:
    return tf.train.Feature(bytes_list=tf.train.BytesList(value=[value]))


def _int_feature(value: int) -> tf.train.Feature:
    return tf.train.Feature(int64_list=tf.train.Int64List(value=[int(value)]))


def make_example(
    image: bytes,
    label: int,
    identity: str,
    path: str,
    height: int,
    width: int,
    landmarks: np.ndarray | None = None,
) -> bytes:
    """A serialized `tf.train.Example` with the features described in the module docstring."""
    fmt = image_format(image)
    if fmt is None:
        raise ValueError(f"Only JPEG and PNG bytes can be stored. Received: path={path!r}")
    feature = {
        "image": _bytes_feature(image),
        "format": _bytes_feature(fmt.encode()),
        "height": _int_feature(height),
        "width": _int_feature(width),
        "label": _int_feature(label),
        "identity": _bytes_feature(identity.encode("utf-8")),
        "path": _bytes_feature(path.encode("utf-8")),
    }
    if landmarks is not None:
        values = np.asarray(landmarks, dtype=np.float32).reshape(-1)
        feature["landmarks"] = tf.train.Feature(float_list=tf.train.FloatList(value=values.tolist()))
    return tf.train.Example(features=tf.train.Features(feature=feature)).SerializeToString()
