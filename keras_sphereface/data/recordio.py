"""insightface's RecordIO files (`.rec` + `.idx`): framing, index, random access, scan, image header.

NumPy and `struct` only: no TensorFlow, and MXNet is never imported or needed. The format, as
dmlc-core's RecordIO (`dmlc/recordio.h`) and MXNet's image record header (`IRHeader`) define it:

- A `.rec` file is a sequence of record parts. Each part is a little-endian `uint32` magic
  `0xCED7230A`, a `uint32` length word `cflag << 29 | length`, `length` payload bytes, and zero
  padding up to a multiple of 4 bytes.
- `cflag` 0: a whole record. 1, 2, 3: the start, a middle, the end of a record that the writer
  split where the magic number occurred in its data (at a 4-byte aligned position); the reader
  rejoins the parts with the 4 magic bytes between them.
- The `.idx` file is text, one `key<TAB>offset` line per record: the byte offset of its first part.
- An image record's payload starts with a 24-byte header `uint32 flag, float32 label, uint64 id,
  uint64 id2`. When `flag > 0`, `flag` float32 labels follow the header (the `label` field is then
  unused) and the first of them is the class; the encoded image (JPEG or PNG) is the rest.

`RecordIOReader` reads records by key (one `os.pread` for most records, thread-safe) and scans a
file sequentially in large reads; `unpack_image_record` splits an image record. Every error is a
`RecordIOError` naming the file, the key or byte offset, and what was expected.
"""

from __future__ import annotations

import dataclasses
import os
import struct
import warnings
from collections.abc import Iterator
from pathlib import Path

import numpy as np

#: The uint32 that starts every record part (dmlc-core `RecordIOWriter::kMagic`).
MAGIC = 0xCED7230A
_MAGIC_BYTES = struct.pack("<I", MAGIC)
#: Part header: magic, length word. The top 3 bits of the length word are the continuation flag.
_PART = struct.Struct("<II")
_LENGTH_BITS = 29
_LENGTH_MASK = (1 << _LENGTH_BITS) - 1
#: The continuation flags: a whole record; the start, a middle, the end of a split one.
WHOLE, START, MIDDLE, END = 0, 1, 2, 3
#: MXNet's image record header (`IRHeader`): flag, label, id, id2; 24 bytes.
IMAGE_HEADER = struct.Struct("<IfQQ")
#: The first read of a record by key: most face crops (112x112 JPEGs) fit in one read.
_FIRST_READ = 1 << 15
#: Read size of a sequential scan.
_SCAN_READ = 1 << 22


class RecordIOError(ValueError):
    """An unreadable or inconsistent `.rec`, `.idx` or `property` file; the message names the file, the key or
    offset, and what was expected."""


def _padded(length: int) -> int:
    return (length + 3) & ~3


class _Window:
    """Bytes of a file read ahead through `os.pread`, so nearby reads need no new system call."""

    def __init__(self, fd: int, size: int, chunk: int):
        self.fd, self.size, self.chunk = fd, size, chunk
        self.start, self.data = 0, b""

    def get(self, offset: int, count: int) -> bytes:
        """`count` bytes at `offset` (fewer at the end of the file)."""
        begin = offset - self.start
        if begin < 0 or begin + count > len(self.data):
            self.data, self.start, begin = os.pread(self.fd, max(count, self.chunk), offset), offset, 0
        return self.data[begin:begin + count]


def _read_record(window: _Window, path: Path, offset: int, where: str = "") -> tuple[bytes, int]:
    """The payload of the record whose first part is at `offset`, and the offset after its last part."""
    parts: list[bytes] = []
    position = offset
    while True:
        head = window.get(position, _PART.size)
        if len(head) < _PART.size:
            raise RecordIOError(f"{path}: truncated record at byte offset {position}{where}: expected an 8-byte "
                                f"part header, the file ends at {window.size}")
        magic, word = _PART.unpack(head)
        if magic != MAGIC:
            raise RecordIOError(f"{path}: expected the RecordIO magic 0x{MAGIC:08X} at byte offset {position}"
                                f"{where}, found 0x{magic:08X}: the file is damaged or its index does not match it")
        cflag, length = word >> _LENGTH_BITS, word & _LENGTH_MASK
        expected = (WHOLE, START) if not parts else (MIDDLE, END)
        if cflag not in expected:
            role = "a record's first part" if not parts else f"the next part of the record begun at {offset}"
            raise RecordIOError(f"{path}: record part at byte offset {position}{where} has continuation flag {cflag}; "
                                f"expected {' or '.join(map(str, expected))} ({role})")
        payload = window.get(position + _PART.size, length)
        if len(payload) < length:
            raise RecordIOError(f"{path}: truncated record at byte offset {position}{where}: its part holds {length} "
                                f"bytes up to offset {position + _PART.size + length}, the file ends at {window.size}")
        parts.append(payload)
        position += _PART.size + _padded(length)
        if cflag in (WHOLE, END):
            return (parts[0] if len(parts) == 1 else _MAGIC_BYTES.join(parts)), position


def _parse_lines(path: Path, lines: list[bytes]) -> np.ndarray:
    """The `(key, offset)` rows of index lines, one by one; a bad line is an error naming it."""
    rows = []
    for number, line in enumerate(lines, start=1):
        fields = line.split()
        if not fields:
            continue
        if len(fields) != 2 or not all(f.isdigit() for f in fields):
            raise RecordIOError(f"{path}, line {number}: expected `key<TAB>offset` (two non-negative integers). "
                                f"Received: {line[:80]!r}")
        rows.append((int(fields[0]), int(fields[1])))
    return np.array(rows, dtype=np.int64).reshape(-1, 2)


def _parse_fast(data: bytes) -> np.ndarray | None:
    """The `(key, offset)` rows when every line is two non-negative decimal integers, else None.

    NumPy's C text parser reads the whole file (about 20x faster than splitting it in Python: a
    5.2M-line index in under half a second); the checks that it read every line as two integers
    are vectorized: only digits, tabs, spaces and line ends, and exactly one separator in each line.
    """
    text = data.replace(b"\r\n", b"\n")
    if (text.translate(None, b"0123456789\t \n") or not text or text.startswith(b"\n")
            or any(twice in text for twice in (b"  ", b"\t\t", b"\n\n", b" \n", b"\t\n", b"\n ", b"\n\t"))):
        return None  # other bytes, blank lines, stray separators: the careful parse names the line
    if not text.endswith(b"\n"):
        text += b"\n"
    codes = np.frombuffer(text, dtype=np.uint8)
    ends = np.flatnonzero(codes == ord("\n"))
    separators = np.flatnonzero((codes == ord("\t")) | (codes == ord(" ")))
    num_lines = ends.size
    if separators.size != num_lines or np.any(separators > ends) or np.any(separators[1:] < ends[:-1]):
        return None  # some line without exactly one separator
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # NumPy warns (instead of failing) when it stops early
        try:
            values = np.fromstring(text, dtype=np.int64, sep=" ")
        except (ValueError, DeprecationWarning, OverflowError):
            return None
    return values.reshape(-1, 2) if values.size == 2 * num_lines else None


def read_index(path: str | os.PathLike) -> tuple[np.ndarray, np.ndarray]:
    """Reads a `.idx` file: one `key<TAB>offset` line per record.

    Args:
        path: str or path-like. The index file.

    Returns:
        `(keys, offsets)`: int64 arrays of shape `(num_records,)`, in the file's order.

    Raises:
        FileNotFoundError: no such file.
        RecordIOError: a line that is not two non-negative integers (file and line named), or a key
            listed twice.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"RecordIO index not found: {path}")
    data = path.read_bytes()
    values = _parse_fast(data)
    if values is None:
        values = _parse_lines(path, data.splitlines())
    if values.size == 0:
        raise RecordIOError(f"{path} lists no records; expected `key<TAB>offset` lines")
    keys, offsets = values[:, 0], values[:, 1]
    unique, counts = np.unique(keys, return_counts=True)
    if unique.size != keys.size:
        raise RecordIOError(f"{path}: key {int(unique[counts > 1][0])} is listed {int(counts.max())} times; "
                            f"expected each key once")
    return keys, offsets


class RecordIOReader:
    """A `.rec` file with its `.idx` index: records by key, and a sequential scan.

    Reads go through `os.pread` on one file descriptor, so threads may share a reader. Opening
    checks every index offset against the file size and reads the record at the highest offset,
    so a truncated file is refused at once.

    Args:
        rec_path: str or path-like. The `.rec` file.
        idx_path: str, path-like or None. Its index; None: the `.rec` path with the suffix `.idx`.

    Raises:
        FileNotFoundError: either file is missing.
        RecordIOError: a malformed index, an offset past the end of the `.rec`, or a truncated `.rec`.
    """

    def __init__(self, rec_path: str | os.PathLike, idx_path: str | os.PathLike | None = None):
        self.path = Path(rec_path)
        self.idx_path = Path(idx_path) if idx_path is not None else self.path.with_suffix(".idx")
        if not self.path.is_file():
            raise FileNotFoundError(f"RecordIO file not found: {self.path}")
        self.keys, self.offsets = read_index(self.idx_path)
        self._fd = os.open(self.path, os.O_RDONLY)
        self.size = os.fstat(self._fd).st_size
        try:
            past = np.flatnonzero(self.offsets + _PART.size > self.size)
            if past.size:
                i = int(past[0])
                raise RecordIOError(f"{self.idx_path}: key {int(self.keys[i])} has offset {int(self.offsets[i])}, past "
                                    f"the end of {self.path} ({self.size} bytes); the index belongs to another or a "
                                    f"truncated file")
            last = int(np.argmax(self.offsets))
            self.read_at(int(self.offsets[last]), int(self.keys[last]))
        except BaseException:
            self.close()
            raise
        first = int(self.keys[0]) if self.keys.size else 0
        contiguous = bool(np.array_equal(self.keys, np.arange(first, first + self.keys.size)))
        self._first_key = first if contiguous else None
        self._sorted = None if contiguous else np.argsort(self.keys)

    def __len__(self) -> int:
        return int(self.keys.size)

    def __contains__(self, key: int) -> bool:
        return self._position(key) is not None

    def __enter__(self) -> RecordIOReader:
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()

    def close(self) -> None:
        """Closes the file (reading afterwards fails)."""
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None

    def _position(self, key: int) -> int | None:
        key = int(key)
        if self._first_key is not None:
            index = key - self._first_key
            return index if 0 <= index < self.keys.size else None
        found = int(np.searchsorted(self.keys, key, sorter=self._sorted))
        if found < self.keys.size and int(self.keys[self._sorted[found]]) == key:
            return int(self._sorted[found])
        return None

    def offset(self, key: int) -> int:
        """The byte offset of record `key`'s first part.

        Raises:
            KeyError: the index has no such key.
        """
        position = self._position(key)
        if position is None:
            raise KeyError(f"{self.idx_path} has no key {key}")
        return int(self.offsets[position])

    def read_at(self, offset: int, key: int | None = None) -> bytes:
        """The payload of the record at byte `offset` (its parts rejoined); `key` is named in errors."""
        where = "" if key is None else f" (key {key})"
        return _read_record(_Window(self._fd, self.size, _FIRST_READ), self.path, int(offset), where)[0]

    def read(self, key: int) -> bytes:
        """The payload of record `key`, as the writer was given it (split parts rejoined).

        Raises:
            KeyError: the index has no such key.
            RecordIOError: bad magic or continuation flag, or a truncated record (offset and key named).
        """
        return self.read_at(self.offset(key), key)

    def read_head(self, key: int, count: int) -> bytes:
        """The first `count` bytes of record `key`'s payload (all of it when shorter), in one small read.

        Raises:
            KeyError: the index has no such key.
            RecordIOError: as `read`.
        """
        offset = self.offset(key)
        data = os.pread(self._fd, _PART.size + count, offset)
        if len(data) >= _PART.size:
            magic, word = _PART.unpack_from(data)
            length = word & _LENGTH_MASK
            if magic == MAGIC and word >> _LENGTH_BITS == WHOLE and offset + _PART.size + length <= self.size:
                return data[_PART.size:_PART.size + min(count, length)]
        return self.read_at(offset, key)[:count]  # a split record, or an error to report

    def scan(self, start: int = 0) -> Iterator[tuple[int, bytes]]:
        """Every record of the file in file order, from byte offset `start`, without the index.

        Reads 4 MiB at a time.

        Yields:
            `(offset, payload)`: the offset of the record's first part and its payload.
        """
        window = _Window(self._fd, self.size, _SCAN_READ)
        offset = int(start)
        while offset < self.size:
            payload, end = _read_record(window, self.path, offset)
            yield offset, payload
            offset = end


@dataclasses.dataclass(frozen=True)
class ImageHeader:
    """The header of an image record (MXNet's `IRHeader`).

    Attributes:
        flag: int. 0: one label, in the header; `n > 0`: `n` float32 labels follow the header.
        labels: tuple of float. The label (flag 0) or the `flag` labels; `labels[0]` is the class.
        id: int. The writer's record id.
        id2: int. A second id (unused by insightface).
    """

    flag: int
    labels: tuple[float, ...]
    id: int
    id2: int

    @property
    def label(self) -> float:
        """float. The class (`labels[0]`)."""
        return self.labels[0]


def unpack_image_record(payload: bytes, where: str = "record") -> tuple[ImageHeader, bytes]:
    """Splits an image record's payload into its header and the encoded image.

    Args:
        payload: bytes. A record as `RecordIOReader.read` returns it.
        where: str. Names the record in errors, e.g. `"train.rec, key 7"`.

    Returns:
        `(header, image)`: an `ImageHeader` and the bytes after it (the JPEG or PNG; empty for the
        header and identity records of insightface's layout).

    Raises:
        RecordIOError: the payload is shorter than the header, or than the labels `flag` announces.
    """
    if len(payload) < IMAGE_HEADER.size:
        raise RecordIOError(f"{where}: expected an image record header of {IMAGE_HEADER.size} bytes "
                            f"(flag, label, id, id2), the record holds {len(payload)}")
    flag, label, first_id, second_id = IMAGE_HEADER.unpack_from(payload)
    if flag == 0:
        return ImageHeader(0, (float(label),), first_id, second_id), payload[IMAGE_HEADER.size:]
    end = IMAGE_HEADER.size + 4 * flag
    if end > len(payload):
        raise RecordIOError(f"{where}: flag={flag} announces {flag} float32 labels ({4 * flag} bytes) after the "
                            f"{IMAGE_HEADER.size}-byte header, but the record holds {len(payload)} bytes in all")
    labels = np.frombuffer(payload, dtype="<f4", count=flag, offset=IMAGE_HEADER.size)
    return ImageHeader(flag, tuple(float(v) for v in labels), first_id, second_id), payload[end:]
