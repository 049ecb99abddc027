"""Image files as a `FaceSource` for a model: which files (`collect_images`), their landmarks, how they are cropped.

- `collect_images`: files and folders (searched recursively for JPEG/PNG) -> image paths.
- `LandmarkLookup`: an image's 5 points in a landmark file whose keys are paths relative to some folder.
- `files_source`: the `keras_sphereface.data.FaceSource` that crops image paths (as given) for an
  `Embedder`, by one of `keras_sphereface.data.face_source.ALIGN_MODES`: `"aligned"` (the file is the
  crop), `"landmarks"` (5 points from a landmark file), `"detect"` (MTCNN, the optional `mtcnn` package).
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from keras_sphereface.data.align import template_for_size
from keras_sphereface.data.align_folder import list_images
from keras_sphereface.data.face_source import FaceSource
from keras_sphereface.data.images import IMAGE_EXTENSIONS
from keras_sphereface.inference.embedder import Embedder


def collect_images(inputs: Iterable[str | os.PathLike]) -> list[Path]:
    """Image paths from files and folders (folders searched as `ksf align` searches them: recursively for
    `IMAGE_EXTENSIONS`, following symbolic links once, hidden names skipped; sorted).

    Files are kept whatever their suffix (so an unreadable one is reported, not skipped).

    Args:
        inputs: iterable of str or path-like. Image files and/or folders.

    Returns:
        The paths, in input order (each folder's images sorted).

    Raises:
        FileNotFoundError: an input does not exist.
        ValueError: no images at all.
    """
    inputs = list(inputs)
    paths: list[Path] = []
    for item in inputs:
        path = Path(item)
        if path.is_dir():
            paths.extend(path / relative for relative in list_images(path))
        elif path.is_file():
            paths.append(path)
        else:
            raise FileNotFoundError(f"Image or folder not found. Received: {str(path)!r}")
    if not paths:
        raise ValueError(f"No images ({', '.join(IMAGE_EXTENSIONS)}) found. "
                         f"Received: inputs={[str(i) for i in inputs]}")
    return paths


class LandmarkLookup:
    """Finds an image's 5 landmarks in a landmark file whose keys are paths relative to some folder.

    An image path matches the key it ends with (`.../lfw/images/A/A_0001.jpg` matches `A/A_0001.jpg`);
    when several keys match, the longest wins.

    Args:
        path: str or path-like. A landmark file (`keras_sphereface.data.read_landmarks` format).
    """

    def __init__(self, path: str | os.PathLike):
        from keras_sphereface.data.landmarks import read_landmarks

        self.path = Path(path)
        self.points = read_landmarks(self.path)
        self._by_name: dict[str, list[str]] = {}
        for key in self.points:
            self._by_name.setdefault(Path(key).name, []).append(key)

    def find(self, image: str | os.PathLike) -> np.ndarray | None:
        """The float32 `(5, 2)` points `(x, y)` in pixels of `image`, or None when the file has none for it."""
        text = Path(os.path.abspath(image)).as_posix()
        matches = [k for k in self._by_name.get(Path(image).name, []) if text == k or text.endswith("/" + k)]
        return self.points[max(matches, key=len)] if matches else None

    def table(self, images: Iterable[str | os.PathLike]) -> dict[str, np.ndarray]:
        """`{str(image): (5, 2) points}` for the `images` the file has points for (the others are left out)."""
        found = ((str(image), self.find(image)) for image in images)
        return {key: points for key, points in found if points is not None}


def _crop_owner(embedder: Embedder) -> tuple[str, str]:
    """`(template, crop_for)`: the export contract's alignment template and wording, else the size's template."""
    contract = embedder.contract
    if contract is None:
        return template_for_size(embedder.input_size), embedder.description
    return contract.alignment_template, (f"the export's contract ({contract.model_name}, "
                                         f"{contract.alignment_template} template)")


def files_source(
    embedder: Embedder,
    paths: Sequence[str | os.PathLike],
    align: str = "aligned",
    landmarks: str | os.PathLike | None = None,
    detector: Any = None,
) -> FaceSource:
    """The `FaceSource` that crops the image files `paths` (keys: `str(path)`, as given) for `embedder`.

    Args:
        embedder: `Embedder`. Gives the crop size `(height, width)` and, for an export, the contract's
            alignment template (else the template of that size).
        paths: sequence of str or path-like. The image files (their landmarks are looked up once).
        align: str. One of `keras_sphereface.data.face_source.ALIGN_MODES`.
        landmarks: str, path-like or None. The landmark file (required for `"landmarks"`).
        detector: object or None. For `"detect"`: a `keras_sphereface.data.detect.FaceDetector` (or anything
            with its `landmarks(image)` method); None builds MTCNN on first use.

    Returns:
        A `FaceSource` with `root=Path(".")`.

    Raises:
        ValueError: an unknown `align`, or `"landmarks"` without a landmark file.
        FileNotFoundError: the landmark file does not exist.
    """
    points = None
    if align == "landmarks" and landmarks is not None:
        points = LandmarkLookup(landmarks).table(paths)
    template, crop_for = _crop_owner(embedder)
    return FaceSource.for_mode(align, ".", landmarks=points, detector=detector, template=template,
                               size=tuple(embedder.input_size), crop_for=crop_for)
