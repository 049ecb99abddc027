"""`FaceSource`: where face images come from and how each becomes the crop a model sees.

Read the encoded image, decode it (RGB), and align it with 5 landmarks when a landmark file is given
(else the images must already be aligned crops). `embed_images` reads through it; `RecordSource`
(`record_source.py`) serves TFRecords the same way.
"""

from __future__ import annotations

import dataclasses
import hashlib
from pathlib import Path

import numpy as np

from keras_sphereface.data.align import align_face
from keras_sphereface.data.images import decode_image_rgb

# How an image becomes the crop a model sees; one vocabulary for training, data, inference and evaluation:
# "aligned": the image is the crop already; "landmarks": warp it with 5 landmarks (from a landmark file,
# or the ones stored in TFRecords); "detect": find the face and its landmarks first (MTCNN).
ALIGN_MODES = ("aligned", "landmarks", "detect")


@dataclasses.dataclass
class FaceSource:
    """Where images come from and how they become crops.

    Attributes:
        root: Path. Image paths are relative to it.
        landmarks: dict or None. Relative path -> `(5, 2)` points; None when the images are
            already aligned crops.
        template: str. Alignment template (`"sphereface"`, `"arcface"`).
        size: tuple of 2 ints. Crop `(height, width)`.
        interpolation: str. Warp interpolation (`"bilinear"`).
    """

    root: Path
    landmarks: dict | None = None
    template: str = "sphereface"
    size: tuple[int, int] = (112, 96)
    interpolation: str = "bilinear"

    def describe(self) -> str:
        """A string identifying the crop settings (part of every cache key)."""
        if self.landmarks is None:
            return "prealigned"
        return f"align:{self.template}:{self.size[0]}x{self.size[1]}:{self.interpolation}"

    def check_available(self, path: str) -> str | None:
        """Returns why `path` cannot be used (missing file or landmarks), or None."""
        if not (self.root / path).is_file():
            return f"image file not found: {self.root / path}"
        if self.landmarks is not None and path not in self.landmarks:
            return f"no landmarks for {path}"
        return None

    def load_bytes(self, path: str) -> bytes:
        """Returns the encoded image `path`."""
        return (self.root / path).read_bytes()

    def read(self, path: str) -> tuple[bytes, str]:
        """Returns the encoded image and its content key (image digest + crop settings)."""
        data = self.load_bytes(path)
        digest = hashlib.sha256(data)
        digest.update(self.describe().encode())
        if self.landmarks is not None:
            digest.update(np.asarray(self.landmarks[path], dtype=np.float32).tobytes())
        return data, digest.hexdigest()

    def crop(self, path: str, data: bytes) -> np.ndarray:
        """Decodes `data` (the bytes of `path`) and returns the aligned `uint8` RGB crop."""
        image = decode_image_rgb(data, source=self.root / path)
        if self.landmarks is None:
            if tuple(image.shape[:2]) != tuple(self.size):
                raise ValueError(
                    f"{self.root / path}: without landmarks the images must be aligned crops of "
                    f"size {tuple(self.size)} (height, width). Received: shape={image.shape}"
                )
            return image
        return align_face(
            image,
            self.landmarks[path],
            template=self.template,
            size=tuple(self.size),
            interpolation=self.interpolation,
        )
