"""Clear errors for outputs that cannot be written: disk full, file-size limit, read-only folder.

A write that fails for lack of space or permission surfaces as an `OSError` (`ENOSPC`, `EFBIG`,
`EDQUOT`, `EROFS`, `EACCES`, `EPERM`) from Python, or as a TensorFlow `OpError` whose message ends
with the C library's text for the same error (`"...; No space left on device"`) from TensorFlow's
file writers (TFRecords, SavedModel, checkpoints). `WriteError` replaces both with one message that
names the file the user asked for (not a temporary) and the cause in plain words. TensorFlow is
never imported here: its errors are recognised by their message.
"""

from __future__ import annotations

import contextlib
import errno
import os
from collections.abc import Iterator

#: errno -> the cause as the message states it.
WRITE_ERROR_CAUSES = {
    errno.ENOSPC: "disk full (no space left on the device)",
    errno.EDQUOT: "disk full (the disk quota is exceeded)",
    errno.EFBIG: "disk full (file too large: the file-size limit was reached)",
    errno.EROFS: "read-only file system",
    errno.EACCES: "the folder is read-only or not writable (permission denied)",
    errno.EPERM: "the folder is read-only or not writable (operation not permitted)",
}


class WriteError(OSError):
    """An output file or folder could not be written: its message names it, the cause and what is left.

    Attributes:
        errno: int. The underlying error number (`errno.ENOSPC`, `errno.EROFS`, ...).
        filename: str. The file or folder that could not be written.
        message: str. The whole message (also `str(error)`).
    """

    def __init__(self, message: str, code: int | None = None, path: str | os.PathLike | None = None):
        super().__init__(code, message, None if path is None else os.fspath(path))
        self.message = message

    def __str__(self) -> str:
        return self.message

    def with_hint(self, hint: str) -> WriteError:
        """The same error with `hint` (what stays valid, what to do) appended to its message."""
        error = WriteError(f"{self.message} {hint}", self.errno, self.filename)
        error.__cause__ = self.__cause__
        return error


def write_errno(error: BaseException) -> int | None:
    """The errno of a disk-full or read-only failure, or None for any other error.

    Args:
        error: exception. An `OSError`, or a TensorFlow `OpError` (recognised by its message).

    Returns:
        int or None: a key of `WRITE_ERROR_CAUSES`, or None.
    """
    if isinstance(error, OSError):
        return error.errno if error.errno in WRITE_ERROR_CAUSES else None
    if type(error).__module__.startswith("tensorflow"):
        text = str(error)
        for code in WRITE_ERROR_CAUSES:
            if os.strerror(code) in text:
                return code
    return None


def describe_write_error(error: BaseException, path: str | os.PathLike) -> str:
    """`"Could not write PATH: CAUSE."` for a failed write.

    Args:
        error: exception. What the write raised.
        path: str or path-like. The file the user asked for (not the temporary written to).

    Returns:
        str: the message; the cause is in plain words for a disk-full or read-only failure,
        else the error's own text.
    """
    code = write_errno(error)
    cause = WRITE_ERROR_CAUSES[code] if code is not None else f"{type(error).__name__}: {error}"
    return f"Could not write {os.fspath(path)}: {cause}."


def as_write_error(error: BaseException, path: str | os.PathLike) -> WriteError | None:
    """A `WriteError` naming `path` for a disk-full or read-only failure; None for other errors.

    A `WriteError` already is one and is not wrapped again (None): the innermost writer named the file.
    """
    if isinstance(error, WriteError):
        return None
    code = write_errno(error)
    if code is None:
        return None
    return WriteError(describe_write_error(error, path), code, path)


@contextlib.contextmanager
def clear_write_errors(path: str | os.PathLike, hint: str = "") -> Iterator[None]:
    """Turns a disk-full or read-only failure inside the block into a `WriteError` naming `path`.

    Other exceptions pass unchanged.

    Args:
        path: str or path-like. The output the block writes.
        hint: str. Appended to the message (what stays valid, what to do next).
    """
    try:
        yield
    except Exception as error:
        clear = as_write_error(error, path)
        if clear is None:
            raise
        raise (clear.with_hint(hint) if hint else clear) from error
