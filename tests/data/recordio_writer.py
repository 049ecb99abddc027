"""A test-only writer of insightface RecordIO training folders, independent of `keras_sphereface.data.recordio`.

Written from the format description (dmlc-core RecordIO framing, MXNet's image record header), with
`struct` alone, so the reader is tested against files it did not make. (`bench/recordio.py` has a
faster writer of its own for its 20,000-record set.)
"""

from __future__ import annotations

import struct
from collections.abc import Sequence
from pathlib import Path

RECORD_MAGIC = 0xCED7230A


def frame_record(payload: bytes) -> bytes:
    """The record parts of `payload`: split wherever the magic number sits at a 4-byte aligned position.

    Each part: `<I` magic, `<I` (cflag << 29 | length), the bytes, zeros to a multiple of 4. The magic
    bytes at a split are dropped (the reader puts them back between the parts).
    """
    magic = struct.pack("<I", RECORD_MAGIC)
    cuts = [i for i in range(0, len(payload) - 3, 4) if payload[i:i + 4] == magic]
    pieces, start = [], 0
    for cut in cuts:
        pieces.append(payload[start:cut])
        start = cut + 4
    pieces.append(payload[start:])
    out = bytearray()
    for number, piece in enumerate(pieces):
        last = len(pieces) - 1
        cflag = 0 if last == 0 else 1 if number == 0 else 3 if number == last else 2
        out += struct.pack("<II", RECORD_MAGIC, (cflag << 29) | len(piece)) + piece
        out += b"\0" * (-len(piece) % 4)
    return bytes(out)


def image_record(labels: float | Sequence[float], image: bytes = b"", record_id: int = 0) -> bytes:
    """An image record payload: `<IfQQ` (flag, label, id, id2), the labels when there are several, the image."""
    if isinstance(labels, (int, float)):
        return struct.pack("<IfQQ", 0, float(labels), record_id, 0) + image
    values = [float(v) for v in labels]
    return struct.pack("<IfQQ", len(values), 0.0, record_id, 0) + struct.pack(f"<{len(values)}f", *values) + image


def write_records(folder: Path, records: Sequence[tuple[int, bytes]], prop: str | None = None) -> dict[int, int]:
    """Writes `train.rec` and `train.idx` (`key<TAB>offset` lines) of `(key, payload)` records, and `property`.

    Returns:
        dict key -> byte offset of the record.
    """
    folder.mkdir(parents=True, exist_ok=True)
    offsets, data = {}, bytearray()
    for key, payload in records:
        offsets[key] = len(data)
        data += frame_record(payload)
    (folder / "train.rec").write_bytes(bytes(data))
    (folder / "train.idx").write_text("".join(f"{k}\t{v}\n" for k, v in offsets.items()))
    if prop is not None:
        (folder / "property").write_text(prop + "\n")
    return offsets


def write_training_set(folder: Path, classes: Sequence[Sequence[bytes]], header: bool = True,
                       size: tuple[int, int] = (112, 112), magic_in_id: int | None = None) -> dict[int, int]:
    """An insightface training folder of the images of each class (class `c` is `classes[c]`).

    Args:
        folder: Path. Created.
        classes: the encoded images of each class.
        header: bool. insightface's layout with record 0 (`flag = 2`, `[A, B]`) and identity records;
            else every record is an image (keys from 0).
        size: `(height, width)` written to `property`.
        magic_in_id: int or None. The key of an image whose header id is the magic number (its record
            is then split inside the header).

    Returns:
        dict key -> byte offset, as `write_records`.
    """
    records, key = [], 1 if header else 0
    ranges = []
    for label, images in enumerate(classes):
        start = key
        for image in images:
            record_id = RECORD_MAGIC if key == magic_in_id else key
            records.append((key, image_record(label, image, record_id)))
            key += 1
        ranges.append((start, key))
    if header:
        first_identity = key
        identities = [(first_identity + c, image_record([s, e])) for c, (s, e) in enumerate(ranges)]
        records = [(0, image_record([first_identity, first_identity + len(ranges)])), *records, *identities]
    return write_records(folder, records, f"{len(classes)},{size[0]},{size[1]}")
