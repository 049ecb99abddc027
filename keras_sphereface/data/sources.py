"""Where training images come from: a folder per identity, a list file or a RecordIO set; identity filters.

TensorFlow-free: plain paths and names, used by `records.py`. `ImageReader` reads any of them.
"""

from __future__ import annotations

import dataclasses
import os
import threading
from collections import Counter
from collections.abc import Iterable
from pathlib import Path

import numpy as np

from keras_sphereface.data.align_folder import list_images
from keras_sphereface.data.images import IMAGE_EXTENSIONS, read_image_bytes
from keras_sphereface.data.recordio import RecordIOReader
from keras_sphereface.data.recordio_set import REC_NAME, is_recordio_folder, open_recordio_set, read_set_image


@dataclasses.dataclass(frozen=True, slots=True)
class SourceImage:
    """One training image.

    Attributes:
        path: Path. The file to read (for a RecordIO record: the `.rec` file).
        key: str. The path as the source names it (relative to the identity tree's root, or as
            written in the list file; `train.rec#<key>` for a record); landmark files are looked up with it.
        identity: str. The identity (folder name, the list file's label column, or a record's class).
        record: int or None. The key of the image's record in the RecordIO file `path`; None for files.
    """

    path: Path
    key: str
    identity: str
    record: int | None = None


def images_from_folder(root: str | os.PathLike) -> list[SourceImage]:
    """Images of a folder-per-identity tree: `root/<identity>/**/<image>.{jpg,jpeg,png}`.

    Symbolic links are followed as `align_folder.list_images` follows them: an identity folder may
    be a link (a subset assembled from links), and links inside it are walked with a guard
    against loops.

    Args:
        root: str or path-like. The tree's root folder.

    Returns:
        list of `SourceImage`, identity folders in sorted order, images sorted within each.

    Raises:
        FileNotFoundError: `root` is not a folder.
        ValueError: an identity folder holds no image, an image lies directly in `root`, two
            identity folders are the same folder (links), an identity folder is a link to `root`
            or a folder above it, or there are no identity folders at all (the message says
            where it looked).
    """
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"Image folder not found: {root}")
    loose = sorted(p.name for p in root.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS)
    if loose:
        raise ValueError(
            f"{root} holds images outside identity folders (expected root/<identity>/<image>). "
            f"Received: {loose[:3]}"
        )
    found = []
    real_root = Path(os.path.realpath(root))
    seen: dict[str, str] = {}
    folders = sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    for folder in folders:
        real = Path(os.path.realpath(folder))
        if real == real_root or real in real_root.parents:
            raise ValueError(
                f"Identity folder {folder} is a link to {real}, the source folder itself or a folder "
                f"above it (a link loop); remove the link. Received: identity={folder.name!r}"
            )
        if str(real) in seen:
            raise ValueError(
                f"Identity folders {seen[str(real)]!r} and {folder.name!r} of {root} are the same folder "
                f"({real}, through symbolic links): its images would get two labels. Remove one link. "
                f"Received: identity={folder.name!r}"
            )
        seen[str(real)] = folder.name
        names = list_images(folder)
        if not names:
            raise ValueError(
                f"Identity folder {folder} holds no JPEG or PNG image; remove it or add images. "
                f"Received: identity={folder.name!r}"
            )
        found.extend(SourceImage(folder / n, f"{folder.name}/{n}", folder.name) for n in names)
    if not found:
        where = f"{root} ({root.resolve()})" if not root.is_absolute() else str(root)
        raise ValueError(
            f"No identity folder with images under {where}: expected <src>/<identity>/<image> with "
            f"JPEG or PNG images (symbolic links followed, hidden names skipped). "
            f"Received: src={str(root)!r}"
        )
    return found


def images_from_list(list_file: str | os.PathLike) -> list[SourceImage]:
    """Images of a list file: `path label` per line (label: identity name or integer).

    Relative paths are resolved against the list file's folder. The label is the last
    whitespace-separated field, so paths may contain spaces. Blank lines and `#` comments are
    ignored.

    Raises:
        FileNotFoundError: the list file is missing.
        ValueError: a line without a path and a label (file and line number named), or no lines.
    """
    list_file = Path(list_file)
    if not list_file.is_file():
        raise FileNotFoundError(f"List file not found: {list_file}")
    found = []
    with open(list_file, encoding="utf-8") as handle:
        for number, line in enumerate(handle, start=1):
            text = line.strip()
            if not text or text.startswith("#"):
                continue
            fields = text.rsplit(None, 1)
            if len(fields) != 2:
                raise ValueError(
                    f"{list_file}, line {number}: expected `path label`, found {len(fields)} column(s). "
                    f"Received: line={text!r}"
                )
            key, identity = fields
            path = Path(key) if Path(key).is_absolute() else list_file.parent / key
            found.append(SourceImage(path, key, identity))
    if not found:
        raise ValueError(f"List file {list_file} names no images. Received: list_file={str(list_file)!r}")
    return found


def images_from_recordio(folder: str | os.PathLike) -> list[SourceImage]:
    """Images of an insightface training folder (`train.rec`, `train.idx`, `property`; `recordio_set.py`).

    Each record becomes a `SourceImage` with key `train.rec#<key>` and its class (an integer, as
    text) as identity, in key order.

    Raises:
        RecordIOError: a malformed index, property file, header or identity record (see
            `recordio_set.open_recordio_set`).
    """
    found = open_recordio_set(folder)
    rec = found.rec_path
    names = {label: str(label) for label in np.unique(found.labels).tolist()}
    return [SourceImage(rec, f"{REC_NAME}#{key}", names[label], key)
            for key, label in zip(found.keys.tolist(), found.labels.tolist(), strict=True)]


def collect_images(src: str | os.PathLike) -> list[SourceImage]:
    """`images_from_recordio` for a folder with `train.rec` and `train.idx`, `images_from_folder` for any
    other folder, `images_from_list` for a file."""
    if is_recordio_folder(src):
        return images_from_recordio(src)
    return images_from_folder(src) if Path(src).is_dir() else images_from_list(src)


class ImageReader:
    """Reads the encoded bytes of `SourceImage`s: image files, or image records of RecordIO files.

    A RecordIO file is opened once, on first use, and shared by every thread (`os.pread`); a record's
    header label is checked against the image's identity. Use it as a context manager, or `close` it.
    """

    def __init__(self) -> None:
        self._readers: dict[Path, RecordIOReader] = {}
        self._lock = threading.Lock()

    def __call__(self, image: SourceImage) -> bytes:
        """The encoded image, as stored.

        Raises:
            FileNotFoundError: a missing image file.
            RecordIOError: a damaged record, or one whose label is not `image.identity`.
        """
        if image.record is None:
            return read_image_bytes(image.path)
        with self._lock:
            reader = self._readers.get(image.path)
            if reader is None:
                reader = self._readers[image.path] = RecordIOReader(image.path)
        return read_set_image(reader, image.record, int(image.identity))

    def __enter__(self) -> ImageReader:
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()

    def close(self) -> None:
        """Closes the RecordIO files opened."""
        for reader in self._readers.values():
            reader.close()
        self._readers.clear()


def read_identity_file(path: str | os.PathLike) -> set[str]:
    """Identity names from a file: one per line, first column used (so LFW's `people*.txt`,
    `lfw-names.txt` and plain lists all work). A line that is just an integer is a count (LFW's
    `people*.txt` put one before each fold) when the file also names people; when every line is a
    bare integer, they are class ids (a RecordIO set's identities)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"Identity file not found: {path}")
    rows = [line.split() for line in path.read_text(encoding="utf-8").splitlines()]
    rows = [fields for fields in rows if fields and not fields[0].startswith("#")]
    bare_integer = [len(fields) == 1 and fields[0].isdigit() for fields in rows]
    if all(bare_integer):
        return {fields[0] for fields in rows}
    return {fields[0] for fields, count in zip(rows, bare_integer, strict=True) if not count}


def identity_order(identities: Iterable[str]) -> list[str]:
    """Sorted identities; numerically when all are integers (so labels `0..N-1` keep their values)."""
    identities = set(identities)
    if all(i.isdigit() for i in identities):
        return sorted(identities, key=int)
    return sorted(identities)


@dataclasses.dataclass
class Selection:
    """Images kept after filtering, split by identity, with what each filter removed."""

    train: list[SourceImage]
    val: list[SourceImage]
    removed: dict[str, list[str]]


def select_identities(
    images: list[SourceImage],
    exclude: set[str] | None = None,
    include: set[str] | None = None,
    min_images: int = 1,
    val_fraction: float = 0.0,
    seed: int = 0,
) -> Selection:
    """Filters identities and splits them into train and validation sets.

    Args:
        images: list of `SourceImage`.
        exclude: set of str. Identities to drop (e.g. people who are also in a test set).
        include: set of str. If given, only these identities are kept (e.g. `peopleDevTrain.txt`).
        min_images: int. Keep identities with at least this many images (after the filters above).
        val_fraction: float in `[0, 1)`. Fraction of the kept identities (chosen with `seed`)
            that go to validation; identities never appear in both.
        seed: int. Seeds the validation choice.

    Returns:
        `Selection` with `removed` mapping `"excluded"`, `"not_included"`, `"too_few_images"` to
        the identities removed.
    """
    if min_images < 1:
        raise ValueError(f"min_images must be at least 1. Received: min_images={min_images}")
    if not 0.0 <= val_fraction < 1.0:
        raise ValueError(f"val_fraction must be in [0, 1). Received: val_fraction={val_fraction}")
    counts = Counter(image.identity for image in images)
    removed: dict[str, list[str]] = {"excluded": [], "not_included": [], "too_few_images": []}
    kept = set()
    for identity in identity_order(counts):
        if exclude and identity in exclude:
            removed["excluded"].append(identity)
        elif include is not None and identity not in include:
            removed["not_included"].append(identity)
        elif counts[identity] < min_images:
            removed["too_few_images"].append(identity)
        else:
            kept.add(identity)
    order = identity_order(kept)
    num_val = round(val_fraction * len(order))
    chosen = np.random.default_rng(seed).permutation(len(order))[:num_val]
    val_identities = {order[i] for i in chosen}
    train = [image for image in images if image.identity in kept and image.identity not in val_identities]
    val = [image for image in images if image.identity in val_identities]
    return Selection(train=train, val=val, removed=removed)
