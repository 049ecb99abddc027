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
import math
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
    """Raised for bytes that are not a valid protobuf message of the expected kind.

    The only error the readers of this module raise for bad bytes (truncated, corrupt or hostile
    files); messages name the byte offset (from the start of the outermost buffer) where decoding
    failed, and `read_caffemodel` adds the file.
    """


#: Most dimensions a blob may have (numpy's limit is 64; Caffe's blobs have at most 4 in practice).
MAX_BLOB_DIMS = 32

# --- decoding ---------------------------------------------------------------------------------------


def read_varint(buffer: bytes | memoryview, position: int) -> tuple[int, int]:
    """Decodes a base-128 varint at `position`; returns `(value, next position)`.

    Raises:
        ProtobufError: the buffer ends inside the varint, or it is longer than 10 bytes.
    """
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


def _fields(buffer, base: int = 0) -> Iterator[tuple[int, int, object, int]]:
    """`iter_fields` that also yields each value's byte offset, `base` + its position in `buffer`.

    A length field can never be longer than what is left of the buffer, so a hostile length
    (say 2**60) is refused before anything is allocated; values are views, never copies.
    """
    view = memoryview(buffer)
    position = 0
    while position < len(view):
        start = position
        try:
            key, position = read_varint(view, position)
            field, wire = key >> 3, key & 7
            if field == 0:
                raise ProtobufError("Field number 0 is invalid. Received: field=0")
            value_start = position
            if wire == VARINT:
                value, position = read_varint(view, position)
            elif wire == LENGTH:
                size, position = read_varint(view, position)
                if position + size > len(view):
                    raise ProtobufError(f"Field {field} runs past the end of the message: {size} bytes "
                                        f"announced, {len(view) - position} left. Received: size={size}")
                value_start = position
                value, position = view[position:position + size], position + size
            elif wire in (FIXED32, FIXED64):
                width = 4 if wire == FIXED32 else 8
                if position + width > len(view):
                    raise ProtobufError(f"Fixed-size field {field} is cut off: {width} bytes needed, "
                                        f"{len(view) - position} left. Received: wire_type={wire}")
                value, position = view[position:position + width], position + width
            else:
                raise ProtobufError(f"Unsupported wire type (groups are not used by caffe.proto). Received: "
                                    f"wire_type={wire} for field {field}")
        except ProtobufError as error:
            raise ProtobufError(f"at byte offset {base + start}: {error}") from None
        yield field, wire, value, base + value_start


def iter_fields(buffer: bytes | memoryview) -> Iterator[tuple[int, int, object]]:
    """Yields `(field number, wire type, value)` of a message.

    The value is an int for varints, a `memoryview` for length-delimited fields and the raw bytes
    (a `memoryview` of 4 or 8 bytes) for fixed-size fields.

    Raises:
        ProtobufError: malformed bytes (the message names the byte offset).
    """
    for field, wire, value, _ in _fields(buffer):
        yield field, wire, value


def _expect(wire: int, allowed: tuple[int, ...], what: str, offset: int) -> None:
    if wire not in allowed:
        names = {VARINT: "varint", FIXED64: "fixed64", LENGTH: "length-delimited", FIXED32: "fixed32"}
        raise ProtobufError(f"at byte offset {offset}: {what} must be "
                            f"{' or '.join(names[w] for w in allowed)}. Received: wire_type={wire}")


def _text(value, what: str, offset: int) -> str:
    try:
        return bytes(value).decode("utf-8")
    except UnicodeDecodeError as error:
        raise ProtobufError(f"at byte offset {offset + error.start}: {what} is not UTF-8 text. "
                            f"Received: {bytes(value)[:32]!r}") from None


def _repeated_numbers(chunks: list[tuple[int, object, int]], dtype: str, fixed: int, what: str) -> np.ndarray:
    """Joins the packed (LENGTH) and unpacked (FIXED) occurrences of a repeated float/double field."""
    itemsize = np.dtype(dtype).itemsize
    parts = []
    for wire, value, offset in chunks:
        _expect(wire, (LENGTH, fixed), what, offset)
        if len(value) % itemsize:
            raise ProtobufError(f"at byte offset {offset}: packed {what} has {len(value)} bytes, not a multiple "
                                f"of {itemsize}. Received: length={len(value)}")
        parts.append(np.frombuffer(value, dtype=dtype))
    return np.concatenate(parts) if parts else np.zeros(0, dtype=dtype)


def _repeated_varints(chunks: list[tuple[int, object, int]], what: str) -> list[int]:
    values = []
    for wire, value, offset in chunks:
        _expect(wire, (VARINT, LENGTH), what, offset)
        if wire == VARINT:
            values.append(value)
        else:  # packed
            position = 0
            while position < len(value):
                try:
                    number, position = read_varint(value, position)
                except ProtobufError as error:
                    raise ProtobufError(f"at byte offset {offset + position}: {error}") from None
                values.append(number)
    return values


def _decode_blob(buffer, base: int) -> np.ndarray:
    fields: dict[int, list] = {}
    for field, wire, value, offset in _fields(buffer, base):
        fields.setdefault(field, []).append((wire, value, offset))
    if 7 in fields:
        shape_fields = []
        for wire, shape_message, offset in fields[7]:
            _expect(wire, (LENGTH,), "BlobProto.shape", offset)
            shape_fields.extend((w, v, o) for f, w, v, o in _fields(shape_message, offset) if f == 1)
        shape = tuple(_repeated_varints(shape_fields, "BlobShape.dim"))
    else:  # legacy 4-D blobs
        legacy = []
        for number in (1, 2, 3, 4):
            wire, value, offset = fields.get(number, [(VARINT, 0, base)])[-1]
            _expect(wire, (VARINT,), "a legacy BlobProto dimension (num, channels, height, width)", offset)
            legacy.append(value)
        shape = tuple(legacy)
    if 8 in fields:
        data = _repeated_numbers(fields[8], "<f8", FIXED64, "BlobProto.double_data").astype(np.float32)
    else:
        data = _repeated_numbers(fields.get(5, []), "<f4", FIXED32, "BlobProto.data").astype(np.float32)
    needed = math.prod(shape)  # Python ints: no overflow whatever the dimensions claim
    if needed != data.size or len(shape) > MAX_BLOB_DIMS or any(d >= 2**62 for d in shape):
        raise ProtobufError(f"at byte offset {base}: blob data has {data.size} values, its shape {shape[:8]}"
                            f"{'...' if len(shape) > 8 else ''} needs {needed if needed < 10**30 else 'more'} "
                            f"(at most {MAX_BLOB_DIMS} dimensions). Received: shape={shape[:8]}")
    return data.reshape(shape)


def decode_blob(buffer: bytes | memoryview) -> np.ndarray:
    """Decodes a `BlobProto` into a float32 array with the blob's shape.

    Raises:
        ProtobufError: malformed bytes, or data that does not fill the shape.
    """
    return _decode_blob(buffer, 0)


def _decode_layer(buffer, v1: bool, base: int = 0) -> CaffeLayer:
    name_field, type_field, blob_field = (4, 5, 6) if v1 else (1, 2, 7)
    name, kind, blobs = "", "", []
    for field, wire, value, offset in _fields(buffer, base):
        if field == name_field:
            _expect(wire, (LENGTH,), "the layer name", offset)
            name = _text(value, "the layer name", offset)
        elif field == type_field:
            _expect(wire, (VARINT,) if v1 else (LENGTH,), "the layer type", offset)
            kind = f"V1:{value}" if v1 else _text(value, "the layer type", offset)
        elif field == blob_field:
            _expect(wire, (LENGTH,), "a blob", offset)
            blobs.append(_decode_blob(value, offset))
    return CaffeLayer(name=name, type=kind, blobs=blobs)


def decode_net(buffer: bytes | memoryview) -> tuple[str, list[CaffeLayer]]:
    """Decodes a `NetParameter`; returns `(net name, layers in file order)`.

    Raises:
        ProtobufError: the bytes are not a NetParameter (the message names the byte offset).
    """
    name, layers = "", []
    for field, wire, value, offset in _fields(buffer):
        if field == 1:
            _expect(wire, (LENGTH,), "the net name", offset)
            name = _text(value, "the net name", offset)
        elif field in (100, 2):
            _expect(wire, (LENGTH,), "a layer", offset)
            layers.append(_decode_layer(value, v1=field == 2, base=offset))
    return name, layers


def read_caffemodel(path: str | os.PathLike) -> tuple[str, list[CaffeLayer]]:
    """Reads a `.caffemodel` file; returns `(net name, layers)`.

    Only weights are read: nothing in the file is executed, and no allocation exceeds the file's
    own size (lengths and shapes are checked against the bytes present first).

    Raises:
        ProtobufError: the file is not a NetParameter (message names the file and byte offset).
        OSError: the file cannot be read.
    """
    with open(path, "rb") as handle:
        data = handle.read()
    try:
        return decode_net(data)
    except ProtobufError as error:
        raise ProtobufError(f"{path} is not a readable caffemodel ({len(data)} bytes): {error}") from None


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
