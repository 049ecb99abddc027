"""Optional face detector: MTCNN from the `mtcnn` package, imported only when used.

Install with `pip install keras-sphereface[detect]` (the detector's weights ship in its wheel).
The landmarks come back in the order and pixel convention of `keras_sphereface.data.align`.
"""

from __future__ import annotations

import dataclasses
import threading

import numpy as np

#: How the face is chosen when a photo shows several.
CHOICE_RULE = "largest box area minus twice the squared distance of its centre from the image centre"


@dataclasses.dataclass(frozen=True)
class Detection:
    """One detected face.

    Attributes:
        box: tuple of 4 floats. `(x1, y1, x2, y2)` in pixels.
        confidence: float. The detector's score in `[0, 1]`.
        landmarks: `float32` array of shape `(5, 2)`, `(x, y)` of left eye, right eye, nose tip,
            left and right mouth corners.
    """

    box: tuple[float, float, float, float]
    confidence: float
    landmarks: np.ndarray

    def to_json(self) -> dict:
        """The detection as JSON-ready values: `box`, `confidence` and `landmarks` in pixels, rounded."""
        return {
            "box": [round(float(v), 2) for v in self.box],
            "confidence": round(float(self.confidence), 4),
            "landmarks": np.round(self.landmarks.astype(np.float64), 2).tolist(),
        }


def choose_face(detections: list[Detection], image_shape: tuple[int, ...]) -> int:
    """Index of the face to align: large and central (see `CHOICE_RULE`).

    Args:
        detections: list of `Detection`, at least one.
        image_shape: tuple. The image shape `(height, width, ...)`.

    Returns:
        int, an index into `detections`.

    Raises:
        ValueError: `detections` is empty.
    """
    if not detections:
        raise ValueError("choose_face needs at least one detection. Received: detections=[]")
    centre = np.array([image_shape[1], image_shape[0]], dtype=np.float64) / 2.0
    scores = []
    for detection in detections:
        x1, y1, x2, y2 = detection.box
        offset = np.array([(x1 + x2) / 2.0, (y1 + y2) / 2.0]) - centre
        scores.append((x2 - x1) * (y2 - y1) - 2.0 * float(offset @ offset))
    return int(np.argmax(scores))


class FaceDetector:
    """MTCNN face and 5-point landmark detector (thread-safe: calls are serialised).

    Args:
        min_face_size: int. Smallest face to look for, in pixels.
        device: str. TensorFlow device for the detector, e.g. `"CPU:0"` or `"GPU:0"`.

    Raises:
        ImportError: the optional `mtcnn` package is not installed.
    """

    def __init__(self, min_face_size: int = 20, device: str = "CPU:0"):
        if min_face_size < 1:
            raise ValueError(
                f"min_face_size must be a positive integer. Received: min_face_size={min_face_size}"
            )
        try:
            from mtcnn import MTCNN
        except ImportError as error:
            raise ImportError(
                "Face detection needs the optional `mtcnn` package: "
                "pip install 'keras-sphereface[detect]'"
            ) from error
        self.min_face_size = min_face_size
        self.device = device
        self._mtcnn = MTCNN(device=device)
        self._lock = threading.Lock()

    def detect(self, image_rgb: np.ndarray) -> list[Detection]:
        """All faces in an RGB `uint8` image `(height, width, 3)`, best score first."""
        with self._lock:
            rows = self._mtcnn.detect_faces(
                image_rgb, box_format="xyxy", output_type="numpy", min_face_size=self.min_face_size
            )
        rows = np.asarray(rows, dtype=np.float64).reshape(-1, 16)
        detections = [
            Detection(
                box=tuple(float(v) for v in row[1:5]),
                confidence=float(row[5]),
                # mtcnn's numpy rows hold x1..x5 then y1..y5 after the box and score.
                landmarks=row[6:16].reshape(2, 5).T.astype(np.float32),
            )
            for row in rows
        ]
        return sorted(detections, key=lambda d: -d.confidence)

    def landmarks(self, image_rgb: np.ndarray) -> tuple[np.ndarray | None, dict]:
        """The chosen face's landmarks and a record of the choice.

        Returns:
            `(landmarks, record)`: `landmarks` is a `float32` `(5, 2)` array, or None when no
            face was found; `record` holds `faces` (how many), and with several faces `chosen`
            (index), `rule` and every detection, so the choice can be audited.
        """
        detections = self.detect(image_rgb)
        record: dict = {"faces": len(detections)}
        if not detections:
            return None, record
        index = choose_face(detections, image_rgb.shape)
        if len(detections) > 1:
            record.update(chosen=index, rule=CHOICE_RULE, detections=[d.to_json() for d in detections])
        return detections[index].landmarks, record
