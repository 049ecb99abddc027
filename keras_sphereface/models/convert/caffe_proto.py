"""A small reader and writer for the parts of Caffe's `.caffemodel` protobuf that hold weights.

No Caffe and no protobuf library: the protobuf wire format (varints, length-delimited fields,
fixed 32/64-bit values) is decoded and encoded here for the few fields of `caffe.proto` needed:

- `NetParameter`: `name = 1` (string), `layer = 100` (LayerParameter), `layers = 2`
  (V1LayerParameter, the pre-2015 format, read only);
- `LayerParameter`: `name = 1`, `type = 2` (strings), `blobs = 7` (BlobProto);
- `V1LayerParameter`: `name = 4`, `type = 5` (enum), `blobs = 6`;
- `BlobProto`: `shape = 7` (BlobShape: `dim = 1`, int64), the legacy `num/channels/height/width = 1..4`,
  `data = 5` (float, packed or not), `double_data = 8` (double, packed or not).

Every other field is skipped by its wire type, as protobuf readers do.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Iterator, Sequence

import numpy as np

from keras_sphereface.utils.atomic import atomic_write

VARINT, FIXED64, LENGTH, FIXED32 = 0, 1, 2, 5


@dataclasses.dataclass
class CaffeLayer:
    """One layer of a caffemodel: its name, type and weight blobs (float32 arrays in Caffe's layout)."""

    name: str
    type: str
    blobs: list[np.ndarray]


class ProtobufError(ValueError):
    """Raised for bytes that are not a valid protobuf message of the expected kind."""


# --- decoding ---------------------------------------------------------------------------------------


def read_varint(buffer, position: int) -> tuple[int, int]:
    """Decodes a base-128 varint at `position`; returns `(value, next position)`."""
    result = shift = 0
    while True:
        if position >= len(buffer):
            raise ProtobufError(f"Truncated varint. Received: position={position}, length={len(buffer)}")
        byte = buffer[position]
        position += 1
        result |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return result, position
        shift += 7
        if shift >= 70:
            raise ProtobufError(f"Varint longer than 10 bytes. Received: position={position}")


def iter_fields(buffer) -> Iterator[tuple[int, int, object]]:
    """Yields `(field number, wire type, value)` of a message.

    The value is an int for varints, a `memoryview` for length-delimited fields and the raw bytes
    (a `memoryview` of 4 or 8 bytes) for fixed-size fields.
    """
    view = memoryview(buffer)
    position = 0
    while position < len(view):
        key, position = read_varint(view, position)
        field, wire = key >> 3, key & 7
        if wire == VARINT:
            value, position = read_varint(view, position)
        elif wire == LENGTH:
            size, position = read_varint(view, position)
            if position + size > len(view):
                raise ProtobufError(f"Field {field} runs past the end of the message. Received: size={size}")
            value, position = view[position:position + size], position + size
        elif wire in (FIXED32, FIXED64):
            width = 4 if wire == FIXED32 else 8
            value, position = view[position:position + width], position + width
        else:
            raise ProtobufError(f"Unsupported wire type (groups are not used by caffe.proto). Received: "
                                f"wire_type={wire} for field {field}")
        if field == 0:
            raise ProtobufError("Field number 0 is invalid. Received: field=0")
        yield field, wire, value


def _repeated_numbers(chunks: list[tuple[int, object]], dtype: str) -> np.ndarray:
    """Joins the packed (LENGTH) and unpacked (FIXED) occurrences of a repeated float/double field."""
    parts = [np.frombuffer(value, dtype=dtype) for _, value in chunks]
    return np.concatenate(parts) if parts else np.zeros(0, dtype=dtype)


def _repeated_varints(chunks: list[tuple[int, object]]) -> list[int]:
    values = []
    for wire, value in chunks:
        if wire == VARINT:
            values.append(value)
        else:  # packed
            position = 0
            while position < len(value):
                number, position = read_varint(value, position)
                values.append(number)
    return values


def decode_blob(buffer) -> np.ndarray:
    """Decodes a `BlobProto` into a float32 array with the blob's shape."""
    fields: dict[int, list] = {}
    for field, wire, value in iter_fields(buffer):
        fields.setdefault(field, []).append((wire, value))
    if 7 in fields:
        shape_fields = []
        for _, shape_message in fields[7]:
            shape_fields.extend((w, v) for f, w, v in iter_fields(shape_message) if f == 1)
        shape = tuple(_repeated_varints(shape_fields))
    else:  # legacy 4-D blobs
        shape = tuple(fields.get(i, [(VARINT, 0)])[-1][1] for i in (1, 2, 3, 4))
    if 8 in fields:
        data = _repeated_numbers(fields[8], "<f8").astype(np.float32)
    else:
        data = _repeated_numbers(fields.get(5, []), "<f4").astype(np.float32)
    if int(np.prod(shape)) != data.size:
        raise ProtobufError(f"Blob data has {data.size} values, its shape {shape} needs {int(np.prod(shape))}. "
                            f"Received: shape={shape}")
    return data.reshape(shape)


def _decode_layer(buffer, v1: bool) -> CaffeLayer:
    name_field, type_field, blob_field = (4, 5, 6) if v1 else (1, 2, 7)
    name, kind, blobs = "", "", []
    for field, wire, value in iter_fields(buffer):
        if field == name_field and wire == LENGTH:
            name = bytes(value).decode("utf-8")
        elif field == type_field:
            kind = f"V1:{value}" if v1 else bytes(value).decode("utf-8")
        elif field == blob_field and wire == LENGTH:
            blobs.append(decode_blob(value))
    return CaffeLayer(name=name, type=kind, blobs=blobs)


def decode_net(buffer) -> tuple[str, list[CaffeLayer]]:
    """Decodes a `NetParameter`; returns `(net name, layers in file order)`."""
    name, layers = "", []
    for field, wire, value in iter_fields(buffer):
        if field == 1 and wire == LENGTH:
            name = bytes(value).decode("utf-8")
        elif field in (100, 2) and wire == LENGTH:
            layers.append(_decode_layer(value, v1=field == 2))
    return name, layers


def read_caffemodel(path: str | os.PathLike) -> tuple[str, list[CaffeLayer]]:
    """Reads a `.caffemodel` file; returns `(net name, layers)`.

    Raises:
        ProtobufError: the file is not a NetParameter (message names the file).
    """
    with open(path, "rb") as handle:
        data = handle.read()
    try:
        return decode_net(data)
    except (ProtobufError, UnicodeDecodeError) as error:
        raise ProtobufError(f"{path} is not a readable caffemodel: {error}") from None


# --- encoding ---------------------------------------------------------------------------------------


def encode_varint(value: int) -> bytes:
    """Encodes a non-negative int as a base-128 varint."""
    if value < 0:
        raise ValueError(f"Only non-negative varints are written here. Received: value={value}")
    out = bytearray()
    while True:
        byte, value = value & 0x7F, value >> 7
        out.append(byte | (0x80 if value else 0))
        if not value:
            return bytes(out)


def _length_field(field: int, payload: bytes) -> bytes:
    return encode_varint(field << 3 | LENGTH) + encode_varint(len(payload)) + payload


def encode_blob(array: np.ndarray) -> bytes:
    """Encodes an array as a `BlobProto` with a `BlobShape` and packed float32 data."""
    array = np.asarray(array, dtype="<f4")
    dims = b"".join(encode_varint(int(d)) for d in array.shape)
    shape = _length_field(1, dims)
    return _length_field(7, shape) + _length_field(5, array.tobytes(order="C"))


def encode_layer(layer: CaffeLayer) -> bytes:
    """Encodes a `LayerParameter` with name, type and blobs."""
    parts = [_length_field(1, layer.name.encode("utf-8")), _length_field(2, layer.type.encode("utf-8"))]
    parts.extend(_length_field(7, encode_blob(blob)) for blob in layer.blobs)
    return b"".join(parts)


def encode_net(name: str, layers: Sequence[CaffeLayer]) -> bytes:
    """Encodes a `NetParameter` with a name and `layer` (field 100) entries."""
    return _length_field(1, name.encode("utf-8")) + b"".join(
        _length_field(100, encode_layer(layer)) for layer in layers
    )


def write_caffemodel(path: str | os.PathLike, name: str, layers: Sequence[CaffeLayer]) -> None:
    """Writes a `.caffemodel` atomically."""
    with atomic_write(path, "wb") as handle:
        handle.write(encode_net(name, layers))
