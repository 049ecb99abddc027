"""The 5-point landmark file: `path x1 y1 x2 y2 ... x5 y5` per line (NumPy only).

Points are, in order: left eye, right eye, nose tip, left mouth corner, right mouth corner,
in pixel coordinates of the original image with OpenCV's convention (the centre of the
top-left pixel is `(0, 0)`). Fields are separated by tabs or spaces; when a line holds a tab,
the path is everything before the first tab (so paths may contain spaces). Blank lines and
lines starting with `#` are ignored.
"""

from __future__ import annotations

import math
import os
from pathlib import Path

import numpy as np

NUM_POINTS = 5
LANDMARK_NAMES = ("left_eye", "right_eye", "nose", "mouth_left", "mouth_right")


def _split(line: str) -> list[str]:
    if "\t" in line:
        path, _, rest = line.partition("\t")
        return [path.strip(), *rest.split()]
    return line.split()


def parse_landmark_line(
    line: str, source: str = "<string>", line_number: int = 0
) -> tuple[str, np.ndarray]:
    """Parses one `path x1 y1 ... x5 y5` line.

    Args:
        line: str. The line, without or with its newline.
        source: str. The file name, for error messages.
        line_number: int. The 1-based line number, for error messages.

    Returns:
        `(path, points)` with `points` a `float32` array of shape `(5, 2)` of `(x, y)`.

    Raises:
        ValueError: wrong number of columns, a value that is not a finite number, or an empty path.
    """
    fields = _split(line.rstrip("\r\n"))
    where = f"{source}, line {line_number}"
    expected = f"an image path and {2 * NUM_POINTS} numbers (x1 y1 ... x5 y5)"
    if len(fields) != 1 + 2 * NUM_POINTS or not fields[0]:
        raise ValueError(
            f"{where}: expected {expected}, found {len(fields)} column(s). "
            f"Received: line={line.strip()!r}"
        )
    try:
        values = [float(v) for v in fields[1:]]
    except ValueError:
        raise ValueError(
            f"{where}: expected {expected}, found a value that is not a number. "
            f"Received: line={line.strip()!r}"
        ) from None
    if not all(math.isfinite(v) for v in values):
        raise ValueError(
            f"{where}: expected {expected}, found a non-finite value. Received: line={line.strip()!r}"
        )
    return fields[0], np.asarray(values, dtype=np.float32).reshape(NUM_POINTS, 2)


def read_landmarks(path: str | os.PathLike) -> dict[str, np.ndarray]:
    """Reads a landmark file into a dictionary.

    Args:
        path: str or path-like. A text file in the format described in this module's docstring,
            such as `$KSF_DATA_DIR/lfw/landmarks.txt`.

    Returns:
        dict mapping each image path as written in the file (e.g.
        `"Aaron_Eckhart/Aaron_Eckhart_0001.jpg"`) to a `float32` array of shape `(5, 2)`.

    Raises:
        FileNotFoundError: `path` does not exist.
        ValueError: a malformed line (file and line number named), bytes that are not UTF-8
            text (line named) or a path listed twice.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"Landmark file not found: {path}")
    result: dict[str, np.ndarray] = {}
    first_line: dict[str, int] = {}
    for number, line in _text_lines(path.read_bytes(), str(path)):
        stripped = line.strip()
        if not stripped or stripped.startswith("#"):
            continue
        name, points = parse_landmark_line(line, source=str(path), line_number=number)
        if name in result:
            raise ValueError(
                f"{path}, line {number}: image {name!r} already has landmarks on line "
                f"{first_line[name]}. Received: line={stripped!r}"
            )
        result[name] = points
        first_line[name] = number
    return result


def _text_lines(data: bytes, source: str):
    """`(line number, text)` of UTF-8 bytes; lines end at a line feed (a carriage return before it
    is dropped), as editors and `wc -l` count them.

    A UTF-8 byte order mark at the start is skipped. Raises ValueError naming `source` and the
    line for bytes that are not UTF-8.
    """
    if data.startswith(b"\xef\xbb\xbf"):
        data = data[3:]
    for number, raw in enumerate(data.split(b"\n"), start=1):
        try:
            yield number, raw.rstrip(b"\r").decode("utf-8")
        except UnicodeDecodeError as error:
            raise ValueError(
                f"{source}, line {number}: expected UTF-8 text, found byte 0x{raw[error.start]:02x} at "
                f"column {error.start + 1}. Received: line={raw[:80]!r}"
            ) from None
