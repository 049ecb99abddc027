"""Face images from TFRecords written by `ksf make-tfrecords`, served like files (`RecordSource`).

Used by the Angular Fisher Score of TFRecords. TensorFlow-only. Records are read once into memory
(image bytes, identity, landmarks); `RecordSource` then serves them to `embed_images` like files.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import tensorflow as tf

from keras_sphereface.data.face_source import FaceSource
from keras_sphereface.data.schema import parse_spec


def read_face_records(files: list[Path]) -> tuple[list[str], list[str], dict[str, bytes], dict]:
    """Reads face examples (`image`, `label`, optional `identity`, `path`, `landmarks`).

    Args:
        files: list of paths. TFRecord shards.

    Returns:
        `(keys, labels, images, landmarks)`: a key per example (its `path` feature, or
        `<shard>#<index>` when that is missing or repeated), its identity (the `identity` feature,
        else the integer label), the encoded bytes by key, and the `(5, 2)` landmarks by key for
        the examples that store them.
    """
    spec = parse_spec(("image", "label", "identity", "path", "landmarks"))
    keys, labels, images, points = [], [], {}, {}
    for file in files:
        dataset = tf.data.TFRecordDataset(str(file)).map(lambda r: tf.io.parse_single_example(r, spec))
        try:
            for index, example in enumerate(dataset.as_numpy_iterator()):
                key = example["path"].decode("utf-8")
                if not key or key in images:
                    key = f"{file.name}#{index}"
                identity = example["identity"].decode("utf-8") or str(int(example["label"]))
                keys.append(key)
                labels.append(identity)
                images[key] = example["image"]
                if np.all(np.isfinite(example["landmarks"])):
                    points[key] = example["landmarks"].reshape(5, 2)
        except tf.errors.OpError as error:
            raise ValueError(f"{file}: unreadable TFRecord after {len(keys)} examples ({error.message}). "
                             f"Received: file={str(file)!r}") from error
    return keys, labels, images, points


@dataclasses.dataclass
class RecordSource(FaceSource):
    """A `FaceSource` whose images are held in memory, keyed like `read_face_records` returns them."""

    images: dict = dataclasses.field(default_factory=dict)

    def check_available(self, path: str) -> str | None:
        """Returns why record `path` cannot be used (absent, or no landmarks when aligning), or None."""
        if path not in self.images:
            return f"no record {path} in {self.root}"
        if self.landmarks is not None and path not in self.landmarks:
            return f"record {path} in {self.root} stores no landmarks"
        return None

    def load_bytes(self, path: str) -> bytes:
        """Returns the encoded image of record `path`."""
        return self.images[path]
