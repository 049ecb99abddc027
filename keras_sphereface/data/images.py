"""Reading and checking image files: bytes in, RGB `uint8` arrays out (NumPy + OpenCV only).

OpenCV decodes to BGR; the conversion to RGB happens here, at the boundary, so every other
function in the package sees RGB.
"""

from __future__ import annotations

import os
import struct
from pathlib import Path

import cv2
import numpy as np

_JPEG_SOI = b"\xff\xd8"
_JPEG_SOS = b"\xff\xda"
_JPEG_EOI = b"\xff\xd9"
_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
_PNG_END = b"IEND\xaeB`\x82"  # the last chunk's type and CRC
#: Start-of-frame markers (SOF0..SOF15 but DHT, JPG and DAC), whose header gives the image size.
_JPEG_FRAME_MARKERS = frozenset(range(0xC0, 0xD0)) - {0xC4, 0xC8, 0xCC}

#: File suffixes (lower case) read as images everywhere: alignment, TFRecords, evaluation folders.
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png")


def image_format(data: bytes) -> str | None:
    """The container format of encoded image bytes: `"jpeg"`, `"png"`, or None if neither."""
    if data[:2] == _JPEG_SOI:
        return "jpeg"
    if data[:8] == _PNG_SIGNATURE:
        return "png"
    return None


def _jpeg_is_complete(data: bytes) -> bool:
    # Entropy-coded data stuffs every 0xFF with 0x00, so an end-of-image marker after the
    # last start-of-scan marker means the last scan was written to its end.
    return data.rfind(_JPEG_EOI) > data.rfind(_JPEG_SOS) > 0


def _checked_format(data: bytes, source: str | os.PathLike) -> str:
    """`image_format(data)`, refusing bytes that are neither JPEG nor PNG, and a JPEG cut off before its end."""
    fmt = image_format(data)
    if fmt is None:
        raise ValueError(
            f"Cannot decode image {source}: not a JPEG or PNG file ({len(data)} bytes, "
            f"starts with {data[:8]!r}). Received: source={str(source)!r}"
        )
    if fmt == "jpeg" and not _jpeg_is_complete(data):
        raise ValueError(
            f"Cannot decode image {source}: truncated or corrupt JPEG (no end-of-image marker "
            f"after the last scan, {len(data)} bytes). Received: source={str(source)!r}"
        )
    return fmt


def _jpeg_size(data: bytes) -> tuple[int, int] | None:
    """`(height, width)` from a JPEG's frame header (the markers before the first scan), or None."""
    position = 2
    while position + 9 <= len(data):
        if data[position] != 0xFF:
            return None
        marker = data[position + 1]
        if marker == 0xFF:  # fill byte
            position += 1
        elif marker == 0x01 or 0xD0 <= marker <= 0xD8:  # markers without a length
            position += 2
        elif marker in _JPEG_FRAME_MARKERS:
            height, width = struct.unpack_from(">HH", data, position + 5)
            return height, width
        elif marker == _JPEG_SOS[1]:
            return None
        else:
            position += 2 + struct.unpack_from(">H", data, position + 2)[0]
    return None


def encoded_image_size(data: bytes, source: str | os.PathLike = "<bytes>") -> tuple[int, int]:
    """The size of JPEG or PNG bytes, read from their header without decoding the pixels.

    Refuses what `decode_image_rgb` refuses before it decodes (bytes that are neither JPEG nor PNG,
    a JPEG without its end-of-image marker after the last scan), a PNG without its final `IEND`
    chunk, and a header without a size; damage inside the compressed pixels is not seen.

    Args:
        data: bytes. The encoded file content.
        source: str or path-like. Named in error messages.

    Returns:
        `(height, width)` in pixels.

    Raises:
        ValueError: the bytes are not a complete JPEG or PNG, or their header gives no size.
    """
    fmt = _checked_format(data, source)
    size = None
    if fmt == "png" and len(data) >= 24 and data[12:16] == b"IHDR" and data.endswith(_PNG_END):
        width, height = struct.unpack_from(">II", data, 16)
        size = (height, width)
    elif fmt == "jpeg":
        size = _jpeg_size(data)
    if size is None or min(size) == 0:
        raise ValueError(
            f"Cannot read the size of image {source}: corrupt or truncated {fmt.upper()} header "
            f"({len(data)} bytes). Received: source={str(source)!r}"
        )
    return size


def decode_image_rgb(data: bytes, source: str | os.PathLike = "<bytes>") -> np.ndarray:
    """Decodes JPEG or PNG bytes to an RGB image, refusing corrupt or truncated data.

    OpenCV quietly returns a partly grey image for a truncated JPEG, and TensorFlow's
    decoder refuses the same bytes, so truncation is checked explicitly: what this accepts,
    the `tf.data` pipeline can decode too.

    Args:
        data: bytes. The encoded file content.
        source: str or path-like. Named in error messages.

    Returns:
        `uint8` array of shape `(height, width, 3)`, RGB. Grey images are expanded to 3 channels.

    Raises:
        ValueError: the bytes are not a complete, decodable JPEG or PNG.
    """
    fmt = _checked_format(data, source)
    bgr = cv2.imdecode(np.frombuffer(data, dtype=np.uint8), cv2.IMREAD_COLOR)
    if bgr is None or bgr.ndim != 3 or bgr.shape[2] != 3 or min(bgr.shape[:2]) == 0:
        raise ValueError(
            f"Cannot decode image {source}: corrupt {fmt.upper()} data ({len(data)} bytes). "
            f"Received: source={str(source)!r}"
        )
    return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)


def read_image_bytes(path: str | os.PathLike) -> bytes:
    """Reads a whole image file, with a clear `FileNotFoundError` when it is missing."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"Image file not found: {path}")
    return path.read_bytes()


def load_image_rgb(path: str | os.PathLike) -> np.ndarray:
    """Loads a JPEG or PNG file as an RGB image.

    Args:
        path: str or path-like. The image file (any file name encoding).

    Returns:
        `uint8` array of shape `(height, width, 3)`, RGB channel order.

    Raises:
        FileNotFoundError: `path` does not exist or is not a file.
        ValueError: the file is empty, corrupt, truncated or not a JPEG/PNG.
    """
    return decode_image_rgb(read_image_bytes(path), source=path)


def encode_image(image_rgb: np.ndarray, fmt: str = "jpeg", quality: int = 95) -> bytes:
    """Encodes an RGB `uint8` image `(height, width, 3)` as JPEG (given quality, 1-100) or PNG bytes."""
    bgr = cv2.cvtColor(np.ascontiguousarray(image_rgb), cv2.COLOR_RGB2BGR)
    if fmt == "jpeg":
        ok, buffer = cv2.imencode(".jpg", bgr, [cv2.IMWRITE_JPEG_QUALITY, int(quality)])
    elif fmt == "png":
        ok, buffer = cv2.imencode(".png", bgr)
    else:
        raise ValueError(f"Unknown image format; expected 'jpeg' or 'png'. Received: fmt={fmt!r}")
    if not ok:
        raise ValueError(f"OpenCV could not encode an image of shape {image_rgb.shape} as {fmt}.")
    return buffer.tobytes()
