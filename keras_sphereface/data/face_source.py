"""`FaceSource`: where face images come from and how each becomes the crop a model sees.

Read the encoded image, decode it (RGB), and make the crop by one of `ALIGN_MODES`: take the image
as it is (`"aligned"`: it must be a crop of `size`), warp it with its 5 landmarks (`"landmarks"`),
or find the face and its landmarks with a detector first (`"detect"`: MTCNN,
`keras_sphereface.data.detect.FaceDetector`, imported when first used). `embed_images` reads
through it; `RecordSource` (`record_source.py`) serves TFRecords the same way. NumPy and OpenCV only.
"""

from __future__ import annotations

import dataclasses
import hashlib
import threading
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from keras_sphereface.data.align import align_face
from keras_sphereface.data.images import decode_image_rgb

# How an image becomes the crop a model sees; one vocabulary for training, data, inference and evaluation:
# "aligned": the image is the crop already; "landmarks": warp it with 5 landmarks (from a landmark file,
# or the ones stored in TFRecords); "detect": find the face and its landmarks first (MTCNN).
ALIGN_MODES = ("aligned", "landmarks", "detect")

#: `FaceSource.detector` value that builds `keras_sphereface.data.detect.FaceDetector` (MTCNN) on first use.
MTCNN = "mtcnn"


class FaceError(ValueError):
    """One image cannot become a face crop: unreadable, no landmarks, no face found, or a wrong size."""


@dataclasses.dataclass
class FaceSource:
    """Where images come from and how they become crops.

    Attributes:
        root: Path. Image paths are relative to it (`Path(".")` for paths as given, absolute or not).
        landmarks: mapping or None. Relative path -> `(5, 2)` float32 points `(x, y)` in pixels; None when
            the images are already aligned crops, or when `detector` finds the points.
        template: str. Alignment template (`"sphereface"`, `"arcface"`).
        size: tuple of 2 ints. Crop `(height, width)` in pixels.
        interpolation: str. Warp interpolation (`"bilinear"`).
        detector: None, `MTCNN` (`"mtcnn"`) or an object. Finds the landmarks (`"detect"` mode): `"mtcnn"`
            builds a `keras_sphereface.data.detect.FaceDetector` on first use; an object needs its
            `landmarks(image_rgb) -> (points or None, record)` method. None: no detection.
        crop_for: str. Who takes the crops, named when an aligned image has the wrong size (not part of
            the cache key), e.g. `"model sphere20"` or `"the export's contract (...)"`.

    Raises:
        ValueError: both `landmarks` and `detector` are given.
    """

    root: Path
    landmarks: Mapping[str, np.ndarray] | None = None
    template: str = "sphereface"
    size: tuple[int, int] = (112, 96)
    interpolation: str = "bilinear"
    detector: Any = None
    crop_for: str = "the model"

    def __post_init__(self) -> None:
        if self.landmarks is not None and self.detector is not None:
            raise ValueError("A FaceSource takes its landmarks from a landmark table or from a detector, not both. "
                             f"Received: detector={self.detector!r} and {len(self.landmarks)} landmarks")
        if isinstance(self.detector, str) and self.detector != MTCNN:
            raise ValueError(f"detector must be {MTCNN!r}, a detector object or None. "
                             f"Received: detector={self.detector!r}")
        self._detector_lock = threading.Lock()
        self._built_detector = None if isinstance(self.detector, str) else self.detector

    @classmethod
    def for_mode(
        cls,
        align: str,
        root: str | Path = ".",
        landmarks: Mapping[str, np.ndarray] | None = None,
        detector: Any = None,
        **settings: Any,
    ) -> FaceSource:
        """The `FaceSource` of one of `ALIGN_MODES`.

        Args:
            align: str. `"aligned"`, `"landmarks"` or `"detect"`.
            root: str or Path. See `root`.
            landmarks: mapping or None. Required for `"landmarks"`, ignored otherwise.
            detector: None or a detector (see `detector`), for `"detect"` only; None there means `MTCNN`.
            **settings: `template`, `size`, `interpolation`, `crop_for`.

        Raises:
            ValueError: an unknown mode, or `"landmarks"` without landmarks.
        """
        if align not in ALIGN_MODES:
            raise ValueError(f"align must be one of {list(ALIGN_MODES)}. Received: align={align!r}")
        if align == "landmarks" and landmarks is None:
            raise ValueError("align='landmarks' needs a landmark file. Received: landmarks=None")
        return cls(
            Path(root),
            landmarks if align == "landmarks" else None,
            detector=(detector or MTCNN) if align == "detect" else None,
            **settings,
        )

    @property
    def align(self) -> str:
        """The entry of `ALIGN_MODES` this source crops by."""
        if self.detector is not None:
            return "detect"
        return "aligned" if self.landmarks is None else "landmarks"

    def describe(self) -> str:
        """A string identifying the crop settings (part of every cache key)."""
        if self.align == "aligned":
            return "prealigned"
        crop = f"{self.template}:{self.size[0]}x{self.size[1]}:{self.interpolation}"
        if self.align == "detect":
            return f"detect:{self._detector_name()}:{crop}"
        return f"align:{crop}"

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
        """Returns the encoded image and its content key (image digest + crop settings).

        An image without landmarks (`"landmarks"`) gets a key too; its `crop` then says what is wrong
        (an unreadable image first, as for every mode).

        Raises:
            FaceError: the file cannot be read.
        """
        try:
            data = self.load_bytes(path)
        except OSError as error:
            raise FaceError(f"{self.root / path}: unreadable image ({error})") from error
        digest = hashlib.sha256(data)
        digest.update(self.describe().encode())
        if self.landmarks is not None and path in self.landmarks:
            digest.update(np.asarray(self.landmarks[path], dtype=np.float32).tobytes())
        return data, digest.hexdigest()

    def crop(self, path: str, data: bytes) -> np.ndarray:
        """Decodes `data` (the bytes of `path`) and returns the aligned `uint8` RGB crop `(height, width, 3)`.

        Raises:
            FaceError: undecodable bytes, no landmarks, no face found, or an `"aligned"` image that is not
                `size`.
        """
        where = self.root / path
        try:
            image = decode_image_rgb(data, source=where)
        except ValueError as error:
            raise FaceError(f"{where}: unreadable image ({error})") from error
        if self.align == "aligned":
            if tuple(image.shape[:2]) != tuple(self.size):
                raise FaceError(
                    f"{where} is {image.shape[0]}x{image.shape[1]} (height x width), but {self.crop_for} takes "
                    f"aligned {self.size[0]}x{self.size[1]} crops: without landmarks the images must be aligned "
                    f"crops of that size. Align the face first (landmarks or detection). "
                    f"Received: shape={image.shape}"
                )
            return image
        points = self._points(path) if self.landmarks is not None else self._detect(where, image)
        return align_face(image, points, template=self.template, size=tuple(self.size),
                          interpolation=self.interpolation)

    def _points(self, path: str) -> np.ndarray:
        if path not in self.landmarks:
            raise FaceError(f"{self.root / path}: no landmarks for this image")
        return self.landmarks[path]

    def _detector_name(self) -> str:
        return "MTCNN" if isinstance(self.detector, str) else type(self.detector).__name__

    def _detect(self, where: Path, image: np.ndarray) -> np.ndarray:
        with self._detector_lock:  # the crops are made in threads: build MTCNN once
            if self._built_detector is None:
                from keras_sphereface.data.detect import FaceDetector

                self._built_detector = FaceDetector()
        points, _ = self._built_detector.landmarks(image)
        if points is None:
            raise FaceError(f"{where}: no face found by the face detector ({self._detector_name()})")
        return points
