"""An insightface training set folder (`train.rec`, `train.idx`, `property`): its two layouts and labels.

NumPy only, through `recordio.py`. insightface's training sets (CASIA-WebFace, MS1MV2, MS1MV3,
Glint360K, ...) ship as a folder holding:

- `train.rec` / `train.idx`: the images as RecordIO image records (`recordio.py`);
- `property`: one line `num_classes,height,width` (e.g. `93431,112,112`).

Two layouts are in use:

- **with a header record**: record 0 has `flag = 2` and the labels `[A, B]`; the images are at keys
  `1 .. A-1` and the identity records at keys `A .. B-1`. Identity record `A + c` has `flag = 2`
  and the labels `[start, end)`: the keys of class `c`'s images. Each image's own header label
  must be its class (checked when it is read).
- **without it**: every key of the index is an image, and its header's label (the first of its
  labels when `flag > 0`) is its class.

`open_recordio_set` tells them apart (record 0 with `flag > 0` and no image bytes is a header
record) and returns the key, class and count of every image.
"""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path

import numpy as np

from keras_sphereface.data.images import image_format
from keras_sphereface.data.recordio import IMAGE_HEADER, RecordIOError, RecordIOReader, unpack_image_record

REC_NAME = "train.rec"
IDX_NAME = "train.idx"
PROPERTY_NAME = "property"
#: The layouts `open_recordio_set` recognises.
LAYOUTS = ("header", "flat")
#: Bytes read to find an image's labels in the flat layout: the header and up to 10 labels.
_HEAD_BYTES = IMAGE_HEADER.size + 40


def is_recordio_folder(path: str | os.PathLike) -> bool:
    """Whether `path` is a folder holding `train.rec` and `train.idx` (an insightface training set)."""
    folder = Path(path)
    return folder.is_dir() and (folder / REC_NAME).is_file() and (folder / IDX_NAME).is_file()


@dataclasses.dataclass(frozen=True)
class SetProperty:
    """The `property` file of a training set.

    Attributes:
        num_classes: int. Identities in the set.
        height: int. Image height in pixels.
        width: int. Image width in pixels.
    """

    num_classes: int
    height: int
    width: int


def read_property(path: str | os.PathLike) -> SetProperty:
    """Reads a `property` file: one line `num_classes,height,width` of positive integers.

    Raises:
        FileNotFoundError: no such file.
        RecordIOError: any other content (the file and what it holds are named).
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"RecordIO property file not found: {path}")
    text = path.read_text(encoding="utf-8", errors="replace").strip()
    fields = [f.strip() for f in text.split(",")]
    if len(fields) != 3 or not all(f.isdigit() and int(f) > 0 for f in fields):
        raise RecordIOError(f"{path}: expected one line `num_classes,height,width` (three positive integers, e.g. "
                            f"`93431,112,112`). Received: {text[:80]!r}")
    return SetProperty(*(int(f) for f in fields))


@dataclasses.dataclass
class RecordIOSet:
    """The images of an insightface training folder, with their classes.

    Attributes:
        folder: Path. The folder.
        layout: str. `"header"` (record 0 gives the image and identity key ranges) or `"flat"`.
        keys: `np.ndarray` of int64, shape `(num_images,)`. The image records' keys, increasing.
        labels: `np.ndarray` of int64, shape `(num_images,)`. The class of each image.
        property: `SetProperty` or None. The `property` file, when there is one.
    """

    folder: Path
    layout: str
    keys: np.ndarray
    labels: np.ndarray
    property: SetProperty | None

    @property
    def rec_path(self) -> Path:
        """Path. The `train.rec` file."""
        return self.folder / REC_NAME

    @property
    def num_classes(self) -> int:
        """int. Distinct classes among the images."""
        return int(np.unique(self.labels).size)


def _class_of(value: float, where: str) -> int:
    if not (value >= 0 and float(value).is_integer()):
        raise RecordIOError(f"{where}: expected a class index (a non-negative whole number) as the label. "
                            f"Received: label={value!r}")
    return int(value)


def _header_layout(reader: RecordIOReader, header, where: str) -> tuple[np.ndarray, np.ndarray]:
    """Image keys and classes from record 0's `[A, B]` and the identity records `A .. B-1`."""
    if header.flag != 2:
        raise RecordIOError(f"{where}: a header record (no image bytes) must have flag 2 and the labels [A, B] "
                            f"(images at keys 1..A-1, identities at A..B-1). Received: flag={header.flag}, "
                            f"labels={list(header.labels)}")
    first_identity, end = (_class_of(v, where) for v in header.labels)
    if not 1 <= first_identity <= end:
        raise RecordIOError(f"{where}: expected labels [A, B] with 1 <= A <= B. Received: {list(header.labels)}")
    needed = np.arange(1, end, dtype=np.int64)
    missing = needed[~np.isin(needed, reader.keys)]
    if missing.size:
        raise RecordIOError(f"{where}: the header record puts images at keys 1..{first_identity - 1} and identities "
                            f"at {first_identity}..{end - 1}, but {reader.idx_path} has no key {int(missing[0])} "
                            f"({missing.size} keys missing)")
    cover = np.zeros(first_identity, dtype=np.int64)
    ranges = []
    for key in range(first_identity, end):
        record_where = f"{reader.path}, key {key} (identity record of class {key - first_identity})"
        identity, _ = unpack_image_record(reader.read(key), record_where)
        if identity.flag != 2:
            raise RecordIOError(f"{record_where}: expected flag 2 and the labels [start, end) of the class's image "
                                f"keys. Received: flag={identity.flag}, labels={list(identity.labels)}")
        start, stop = (_class_of(v, record_where) for v in identity.labels)
        if not 1 <= start < stop <= first_identity:
            raise RecordIOError(f"{record_where}: expected image keys [start, end) inside 1..{first_identity - 1}. "
                                f"Received: [{start}, {stop})")
        cover[start:stop] += 1
        ranges.append((start, stop, key - first_identity))
    bad = np.flatnonzero(cover[1:] != 1) + 1
    if bad.size:
        key = int(bad[0])
        what = "no identity record" if cover[key] == 0 else f"{int(cover[key])} identity records"
        raise RecordIOError(f"{reader.path}: image key {key} belongs to {what}; expected the identity ranges "
                            f"[start, end) to cover keys 1..{first_identity - 1} once ({bad.size} keys affected)")
    labels = np.zeros(first_identity, dtype=np.int64)
    for start, stop, label in ranges:
        labels[start:stop] = label
    return np.arange(1, first_identity, dtype=np.int64), labels[1:]


def _flat_layout(reader: RecordIOReader) -> tuple[np.ndarray, np.ndarray]:
    """Every key of the index is an image; its header label is its class."""
    keys = np.sort(reader.keys)
    labels = np.empty(keys.size, dtype=np.int64)
    for i, key in enumerate(keys.tolist()):
        where = f"{reader.path}, key {key}"
        head = reader.read_head(key, _HEAD_BYTES)
        if len(head) >= IMAGE_HEADER.size and IMAGE_HEADER.unpack_from(head)[0] * 4 + IMAGE_HEADER.size > len(head):
            head = reader.read(key)  # more labels than the first read holds
        labels[i] = _class_of(unpack_image_record(head, where)[0].label, where)
    return keys, labels


def open_recordio_set(folder: str | os.PathLike) -> RecordIOSet:
    """Reads the index, the layout and every image's class of an insightface training folder.

    With a header record this reads record 0 and the identity records; without it, the start of
    every record (about 60 bytes each).

    Args:
        folder: str or path-like. A folder holding `train.rec`, `train.idx` and (optionally) `property`.

    Returns:
        A `RecordIOSet`.

    Raises:
        FileNotFoundError: `train.rec` or `train.idx` is missing.
        RecordIOError: a malformed index, property file or record; a header record that is not
            `flag = 2`; identity ranges that leave an image without a class or give it two; a label
            that is not a class index, or one outside the property's `num_classes`.
    """
    folder = Path(folder)
    prop = read_property(folder / PROPERTY_NAME) if (folder / PROPERTY_NAME).is_file() else None
    with RecordIOReader(folder / REC_NAME, folder / IDX_NAME) as reader:
        layout = "flat"
        if 0 in reader:
            where = f"{reader.path}, key 0"
            header, image = unpack_image_record(reader.read(0), where)
            if header.flag > 0 and image_format(image) is None:
                layout = "header"
                keys, labels = _header_layout(reader, header, where)
        if layout == "flat":
            keys, labels = _flat_layout(reader)
    if prop is not None and labels.size and int(labels.max()) >= prop.num_classes:
        at = int(np.argmax(labels))
        raise RecordIOError(f"{folder / REC_NAME}, key {int(keys[at])}: class {int(labels[at])} is not below "
                            f"num_classes={prop.num_classes} of {folder / PROPERTY_NAME}")
    return RecordIOSet(folder, layout, keys, labels, prop)


def read_set_image(reader: RecordIOReader, key: int, label: int) -> bytes:
    """The encoded image of record `key`, after checking its header label is `label`.

    Args:
        reader: `RecordIOReader` of the set's `train.rec`.
        key: int. The image record's key.
        label: int. Its class, as `open_recordio_set` found it.

    Returns:
        bytes. The image as stored (JPEG or PNG; not checked here).

    Raises:
        RecordIOError: a damaged record, or a header label other than `label` (a flag/label mismatch).
    """
    where = f"{reader.path}, key {key}"
    header, image = unpack_image_record(reader.read(key), where)
    if header.label != label:
        raise RecordIOError(f"{where}: the image record's label is {header.label:g} (flag {header.flag}), but the "
                            f"set's identity records put it in class {label}")
    return image
