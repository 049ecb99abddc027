"""insightface's `.bin` verification sets (`lfw.bin`, `cfp_fp.bin`, `agedb_30.bin`, ...): read safely, write.

NumPy only (no TensorFlow, no MXNet). A `.bin` file is a pickle of the tuple `(images, same)`
(insightface's `recognition/arcface_mxnet/verification.py` and `arcface_torch/eval/verification.py`
read it with `pickle.load(f, encoding="bytes")`):

- `images`: a list of encoded face crops (JPEG or PNG byte strings; 112x112 in insightface's
  ArcFace alignment), two per pair: images `2i` and `2i + 1` are pair `i`;
- `same`: a list (or a NumPy array) of booleans, one per pair.

Pickles can run arbitrary code while they load, so `read_bin` never uses `pickle.load`: its
unpickler resolves only the globals in `ALLOWED_GLOBALS` (what a NumPy array in a pickle needs)
and refuses every other one with a `BinError` naming the file and the global. Python 2 pickles
(byte strings saved as `str`) load with `encoding="bytes"`. `write_bin` writes the same format
(pickle protocol 4 of a tuple of a list of bytes and a list of bools), atomically.
"""

from __future__ import annotations

import dataclasses
import io
import os
import pickle
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from keras_sphereface.data.images import image_format
from keras_sphereface.utils.atomic import atomic_write

#: The only globals a `.bin` pickle may name: how NumPy rebuilds an array (the `same` flags saved as
#: an array; `_reconstruct` lives in `numpy.core.multiarray` before NumPy 2 and `numpy._core.multiarray`
#: from NumPy 2). Nothing here runs code beyond building an array.
ALLOWED_GLOBALS = frozenset({
    ("numpy.core.multiarray", "_reconstruct"),
    ("numpy._core.multiarray", "_reconstruct"),
    ("numpy", "ndarray"),
    ("numpy", "dtype"),
})
#: The pickle protocol `write_bin` uses (readable by Python 3.4 and later, as insightface's readers are).
WRITE_PROTOCOL = 4


class BinError(ValueError):
    """An unreadable or unsafe `.bin` file; the message names the file and what was expected."""


@dataclasses.dataclass(frozen=True)
class BinSet:
    """A verification set of a `.bin` file.

    Attributes:
        path: Path. The file it was read from.
        images: list of bytes. Encoded crops, `2 * num_pairs` of them; pair `i` is images `2i`, `2i + 1`.
        same: `np.ndarray` of bool, shape `(num_pairs,)`. Whether pair `i` shows one person.
    """

    path: Path
    images: list[bytes]
    same: np.ndarray

    @property
    def name(self) -> str:
        """str. The file's stem (`lfw` for `lfw.bin`): the set's name in reports and logs."""
        return self.path.stem

    @property
    def num_pairs(self) -> int:
        """int. Pairs in the set."""
        return int(self.same.size)


class _RestrictedUnpickler(pickle.Unpickler):
    """An unpickler that resolves only `ALLOWED_GLOBALS`; any other global is a `BinError`."""

    def __init__(self, handle, path: Path):
        super().__init__(handle, encoding="bytes")
        self._path = path

    def find_class(self, module: str, name: str):
        if (module, name) in ALLOWED_GLOBALS:
            return super().find_class(module, name)
        raise BinError(f"{self._path}: refused to load the global {module}.{name}: a .bin file holds only image "
                       f"bytes and booleans (allowed globals: "
                       f"{', '.join(sorted(f'{m}.{n}' for m, n in ALLOWED_GLOBALS))}); the file is not an "
                       f"insightface verification set and was not unpickled")

    def persistent_load(self, pid):
        raise BinError(f"{self._path}: refused a persistent id in the pickle ({pid!r}); a .bin file has none")


def _image_bytes(item, path: Path, index: int) -> bytes:
    if isinstance(item, (bytes, bytearray)):
        data = bytes(item)
    elif isinstance(item, np.ndarray) and item.dtype == np.uint8 and item.ndim == 1:
        data = item.tobytes()
    else:
        raise BinError(f"{path}: image {index} is of type {type(item).__name__}; expected encoded image bytes "
                       f"(JPEG or PNG)")
    if image_format(data) is None:
        raise BinError(f"{path}: image {index} ({len(data)} bytes, starting {data[:4]!r}) is neither a JPEG nor "
                       f"a PNG")
    return data


def _flags(value, path: Path) -> np.ndarray:
    if isinstance(value, np.ndarray):
        if value.ndim != 1 or value.dtype.kind not in "bi":
            raise BinError(f"{path}: the pair flags are an array of dtype {value.dtype} and shape {value.shape}; "
                           f"expected one boolean per pair")
        values = value.tolist()
    elif isinstance(value, (list, tuple)):
        values = list(value)
    else:
        raise BinError(f"{path}: the pair flags are a {type(value).__name__}; expected a list or array of booleans")
    bad = next((i for i, v in enumerate(values) if not isinstance(v, (bool, int)) or v not in (0, 1)), None)
    if bad is not None:
        raise BinError(f"{path}: pair flag {bad} is {values[bad]!r}; expected a boolean")
    return np.asarray(values, dtype=bool).reshape(-1)


def read_bin(path: str | os.PathLike) -> BinSet:
    """Reads a `.bin` verification set without running any code it may hold.

    Args:
        path: str or path-like. The `.bin` file (a pickle of `(images, same)`, Python 2 or 3).

    Returns:
        A `BinSet`.

    Raises:
        FileNotFoundError: no such file.
        BinError: a global other than `ALLOWED_GLOBALS` (the file and `module.name` named; nothing is
            run), a file that is not a pickle or is truncated, content other than a tuple of a list of
            JPEG/PNG bytes and a list or array of booleans (the item named), or an image count that is
            not twice the pair count (both counts named).
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f".bin verification set not found: {path}")
    data = path.read_bytes()
    try:
        content = _RestrictedUnpickler(io.BytesIO(data), path).load()
    except BinError:
        raise
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError, AttributeError, IndexError,
            KeyError, MemoryError, UnicodeDecodeError, OverflowError) as error:
        raise BinError(f"{path}: not a readable pickle ({type(error).__name__}: {error}); expected insightface's "
                       f".bin format, a pickle of (list of image bytes, list of booleans)") from error
    if not isinstance(content, (tuple, list)) or len(content) != 2:
        kind = f"a {len(content)}-item {type(content).__name__}" if isinstance(content, (tuple, list)) else \
            f"a {type(content).__name__}"
        raise BinError(f"{path} holds {kind}; expected the tuple (images, same): a list of image bytes and a list "
                       f"of booleans")
    raw_images, raw_same = content
    if not isinstance(raw_images, (list, tuple)):
        raise BinError(f"{path}: the images are a {type(raw_images).__name__}; expected a list of image bytes")
    same = _flags(raw_same, path)
    if len(raw_images) != 2 * same.size:
        raise BinError(f"{path} holds {len(raw_images)} images for {same.size} pairs; expected two images per "
                       f"pair ({2 * same.size})")
    images = [_image_bytes(item, path, i) for i, item in enumerate(raw_images)]
    return BinSet(path, images, same)


def write_bin(same: Sequence[bool] | np.ndarray, images: Sequence[bytes], out: str | os.PathLike) -> Path:
    """Writes a `.bin` verification set in insightface's format, atomically.

    Args:
        same: sequence of bool, length `num_pairs`. Whether pair `i` shows one person.
        images: sequence of bytes, length `2 * num_pairs`. Encoded JPEG or PNG crops; pair `i` is
            images `2i` and `2i + 1`.
        out: str or path-like. The `.bin` file (replaced whole, or left as it was on failure).

    Returns:
        Path. `out`.

    Raises:
        ValueError: not two images per pair, or an image that is not JPEG or PNG bytes.
        WriteError: `out` could not be written (disk full, read-only folder).
    """
    flags = [bool(v) for v in np.asarray(same, dtype=bool).reshape(-1).tolist()]
    images = [bytes(image) for image in images]
    if len(images) != 2 * len(flags):
        raise ValueError(f"A .bin set needs two images per pair. Received: {len(images)} images for "
                         f"{len(flags)} pairs")
    bad = next((i for i, image in enumerate(images) if image_format(image) is None), None)
    if bad is not None:
        raise ValueError(f"Image {bad} is neither JPEG nor PNG bytes. Received: {images[bad][:4]!r}")
    out = Path(out)
    with atomic_write(out, "wb") as handle:
        pickle.dump((images, flags), handle, protocol=WRITE_PROTOCOL)
    return out
