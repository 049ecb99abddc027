"""Atomic file writing: a reader never sees a half-written file.

Everything a user can save (weights, checkpoints, TFRecords, exports, reports) goes through
these helpers. Data is written to a temporary sibling (same directory, so the final
`os.replace` is a rename on one filesystem) and only renamed over the target when the
writer finished without an exception; on failure the temporary is removed and any file
that was already at the target is left untouched. A disk-full or read-only failure is raised as
`keras_sphereface.utils.disk.WriteError`, naming the target (not the temporary) and the cause.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import shutil
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO

from keras_sphereface.utils.disk import clear_write_errors


def _temporary_sibling(target: Path, directory: bool = False) -> Path:
    target.parent.mkdir(parents=True, exist_ok=True)
    prefix = f".{target.name}.tmp-"
    if directory:
        return Path(tempfile.mkdtemp(prefix=prefix, dir=target.parent))
    fd, name = tempfile.mkstemp(prefix=prefix, dir=target.parent)
    os.close(fd)
    # mkstemp creates 0600; give the finished file the permissions open() would have.
    os.chmod(name, 0o666 & ~_current_umask())
    return Path(name)


def _temporary_file(target: Path) -> Path:
    tmp = _temporary_sibling(target)
    # Keep the extension: writers such as model.save() dispatch on it.
    suffixed = tmp.with_name(tmp.name + "".join(target.suffixes))
    tmp.rename(suffixed)
    return suffixed


def _current_umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


@contextlib.contextmanager
def atomic_path(target: str | os.PathLike, directory: bool = False) -> Iterator[Path]:
    """Yields a temporary path that is renamed to `target` when the block succeeds.

    Use it with writers that want a path rather than a file object (`model.save`, NumPy,
    `tf.io.TFRecordWriter`, SavedModel export). With `directory=True` the temporary is a
    directory and an existing directory at `target` is replaced as a whole.

    Args:
        target: str or path-like. Where the finished file or directory must appear.
        directory: bool. Whether the output is a directory (e.g. a SavedModel).

    Yields:
        The temporary `Path` to write to. Its suffix is kept, because some writers
        (Keras' `model.save`) choose the format from the file extension.

    Raises:
        WriteError: the disk is full or the folder read-only (from Python's or TensorFlow's
            writers inside the block, or creating the temporary); names `target`.
    """
    target = Path(target)
    with clear_write_errors(target):
        tmp = _temporary_sibling(target, directory=True) if directory else _temporary_file(target)
        try:
            yield tmp
            if directory:
                if target.exists():
                    old = _temporary_sibling(target, directory=True)
                    old.rmdir()
                    target.rename(old)
                    tmp.rename(target)
                    shutil.rmtree(old, ignore_errors=True)
                else:
                    tmp.rename(target)
            else:
                os.replace(tmp, target)
        finally:
            _remove(tmp)


def _remove(path: Path) -> None:
    """Removes a leftover temporary; a failure (e.g. the folder became read-only) keeps the first error."""
    if path.is_dir():
        shutil.rmtree(path, ignore_errors=True)
    else:
        with contextlib.suppress(OSError):
            path.unlink(missing_ok=True)


@contextlib.contextmanager
def atomic_files() -> Iterator[Callable[[str | os.PathLike], Path]]:
    """All or nothing for several files: none replaces its target unless every one was written.

    Yields `stage(target) -> Path`, which returns a new temporary sibling of `target` (suffix kept)
    to write to. When the block succeeds the temporaries are renamed over their targets in the order
    they were staged (stage the file readers look at first, such as a manifest, last); when it
    fails they are all removed and every file already at a target is left as it was.

    The block's errors are not attributed to a target (several are open): wrap each write in
    `keras_sphereface.utils.disk.clear_write_errors(target)` to name the file in a disk-full error.

    Yields:
        callable `stage(target)`, to call from the thread that entered the block.

    Raises:
        WriteError: a temporary could not be created or renamed (disk full, read-only folder).
    """
    staged: list[tuple[Path, Path]] = []

    def stage(target: str | os.PathLike) -> Path:
        target = Path(target)
        with clear_write_errors(target):
            tmp = _temporary_file(target)
        staged.append((tmp, target))
        return tmp

    try:
        yield stage
        for tmp, target in staged:
            with clear_write_errors(target):
                os.replace(tmp, target)
    finally:
        for tmp, _ in staged:
            _remove(tmp)


@contextlib.contextmanager
def atomic_write(
    target: str | os.PathLike, mode: str = "w", encoding: str | None = "utf-8"
) -> Iterator[IO]:
    """Opens a temporary file that replaces `target` only when the block succeeds.

    Args:
        target: str or path-like. The file to (re)write.
        mode: str. `"w"` for text or `"wb"` for bytes.
        encoding: str or None. Text encoding; ignored in binary mode.

    Yields:
        An open file object. It is flushed and fsynced before the rename.
    """
    if mode not in ("w", "wb"):
        raise ValueError(f"atomic_write supports mode 'w' or 'wb'. Received: mode={mode!r}")
    with atomic_path(target) as tmp:
        kwargs = {} if "b" in mode else {"encoding": encoding}
        with open(tmp, mode, **kwargs) as handle:
            yield handle
            handle.flush()
            os.fsync(handle.fileno())


def sha256_file(path: str | os.PathLike, chunk_size: int = 1 << 20) -> str:
    """Returns the hex SHA-256 digest of a file, read in chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(chunk_size), b""):
            digest.update(chunk)
    return digest.hexdigest()
