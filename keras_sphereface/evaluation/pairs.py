"""Verification pair lists: LFW `pairs.txt` and a generic `path1 path2 same [fold]` format.

Two formats are read, chosen from the first line that is not blank or a `#` comment:

- LFW (`pairs.txt`, `pairsDevTest.txt`, `pairsDevTrain.txt`): an optional header of integers,
  then `name n1 n2` (same person) and `name1 n1 name2 n2` (different people) lines. A header
  `K N` means K folds, each of N same pairs followed by N different pairs (View 2); a header `N`
  means one set of N same then N different pairs (View 1). Image `n` of `name` is
  `name/name_{n:04d}.jpg`.
- Generic: `path1 path2 same [fold]`, whitespace separated, paths relative to the image root,
  `same` one of `1 true same` or `0 -1 false diff`, and an optional integer fold id per line.

Pairs without fold information are split into stratified folds: the same pairs, in file order,
are cut into `num_folds` contiguous chunks, and the different pairs likewise.
"""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path

import numpy as np

_SAME_WORDS = {
    "1": True,
    "true": True,
    "same": True,
    "0": False,
    "-1": False,
    "false": False,
    "diff": False,
    "different": False,
}


@dataclasses.dataclass(frozen=True)
class PairList:
    """A list of verification pairs.

    Attributes:
        left: tuple of str. Image paths (POSIX, relative to the image root) of the first images.
        right: tuple of str. Image paths of the second images.
        same: `np.ndarray` of bool, shape `(num_pairs,)`. Whether a pair shows one person.
        folds: `np.ndarray` of int, shape `(num_pairs,)`. Fold index `0..num_folds-1` of each pair.
        lines: `np.ndarray` of int, shape `(num_pairs,)`. 1-based line of each pair in `source`.
        source: str. The file the pairs were read from (for messages).
        has_folds: bool. Whether the folds come from the file (False: assigned by stratification).
    """

    left: tuple[str, ...]
    right: tuple[str, ...]
    same: np.ndarray
    folds: np.ndarray
    lines: np.ndarray
    source: str = "<pairs>"
    has_folds: bool = False

    def __len__(self) -> int:
        return len(self.left)

    @property
    def num_folds(self) -> int:
        """int. Number of distinct folds."""
        return int(np.unique(self.folds).size)

    def image_paths(self) -> list[str]:
        """Returns the distinct image paths of all pairs, in first-use order."""
        pairs = zip(self.left, self.right, strict=True)
        return list(dict.fromkeys(path for pair in pairs for path in pair))

    def subset(self, keep: np.ndarray) -> PairList:
        """Returns the pairs where `keep` (bool, shape `(num_pairs,)`) is True, folds unchanged."""
        keep = np.asarray(keep, dtype=bool)
        index = np.flatnonzero(keep)
        return dataclasses.replace(
            self,
            left=tuple(self.left[i] for i in index),
            right=tuple(self.right[i] for i in index),
            same=self.same[index],
            folds=self.folds[index],
            lines=self.lines[index],
        )


def lfw_image_path(name: str, number: int) -> str:
    """Returns the LFW path `name/name_NNNN.jpg` of image `number` (1-based) of `name`."""
    return f"{name}/{name}_{number:04d}.jpg"


def _is_int(token: str) -> bool:
    try:
        int(token)
    except ValueError:
        return False
    return True


def _data_lines(text: str) -> list[tuple[int, list[str]]]:
    """`(line number, fields)` of the lines that are not blank or comments.

    Lines end at a line feed (a carriage return before it is dropped), as editors count them;
    `str.splitlines` would also cut at form feeds and other separators and shift the numbers.
    """
    rows = []
    for number, raw in enumerate(text.split("\n"), start=1):
        stripped = raw.strip()
        if stripped and not stripped.startswith("#"):
            rows.append((number, stripped.split()))
    return rows


def _error(source: str, line: int, message: str, raw: list[str]) -> ValueError:
    return ValueError(f"{source}, line {line}: {message}. Received: line={' '.join(raw)!r}")


def stratified_folds(same: np.ndarray, num_folds: int = 10) -> np.ndarray:
    """Assigns folds when a pair list has none: each class is cut into contiguous chunks.

    The `i`-th same pair (in file order) of `n` same pairs goes to fold `i * num_folds // n`; the
    different pairs likewise. For LFW `pairsDevTest.txt` (500 same, then 500 different) this gives
    ten folds of 50 + 50 pairs.

    Args:
        same: `np.ndarray` of bool, shape `(num_pairs,)`. Pair labels.
        num_folds: int. Number of folds.

    Returns:
        `np.ndarray` of int, shape `(num_pairs,)`.
    """
    same = np.asarray(same, dtype=bool)
    if num_folds < 2:
        raise ValueError(f"num_folds must be at least 2. Received: num_folds={num_folds}")
    folds = np.zeros(same.shape, dtype=np.int64)
    for label in (True, False):
        index = np.flatnonzero(same == label)
        if index.size and index.size < num_folds:
            raise ValueError(
                f"Too few {'same' if label else 'different'} pairs for {num_folds} folds. "
                f"Received: count={index.size}, num_folds={num_folds}"
            )
        folds[index] = np.arange(index.size) * num_folds // max(index.size, 1)
    return folds


def _stratified(same: np.ndarray, num_folds: int, source: str) -> np.ndarray:
    """`stratified_folds`, with the pair list named in its error."""
    try:
        return stratified_folds(same, num_folds)
    except ValueError as error:
        raise ValueError(f"{source}: {error}") from None


def _parse_lfw(rows, source: str, num_folds: int) -> PairList:
    header: list[int] = []
    if rows and all(_is_int(t) for t in rows[0][1]):
        line, tokens = rows[0]
        if len(tokens) not in (1, 2):
            raise _error(
                source, line, "an LFW header is `folds pairs_per_class` or `pairs_per_class`", tokens
            )
        header = [int(t) for t in tokens]
        if min(header) < 1:
            raise _error(source, line, "the numbers of an LFW header must be positive", tokens)
        rows = rows[1:]
    left, right, same, lines = [], [], [], []
    for line, tokens in rows:
        positions = (1, 2) if len(tokens) == 3 else (1, 3) if len(tokens) == 4 else ()
        if any(_is_int(tokens[i]) and int(tokens[i]) < 1 for i in positions):
            raise _error(source, line, "LFW image numbers start at 1", tokens)
        if len(tokens) == 3 and _is_int(tokens[1]) and _is_int(tokens[2]):
            left.append(lfw_image_path(tokens[0], int(tokens[1])))
            right.append(lfw_image_path(tokens[0], int(tokens[2])))
            same.append(True)
        elif len(tokens) == 4 and _is_int(tokens[1]) and _is_int(tokens[3]):
            left.append(lfw_image_path(tokens[0], int(tokens[1])))
            right.append(lfw_image_path(tokens[2], int(tokens[3])))
            same.append(False)
        else:
            raise _error(
                source, line, "expected `name n1 n2` or `name1 n1 name2 n2` (LFW format)", tokens
            )
        lines.append(line)
    same_arr = np.asarray(same, dtype=bool)
    if len(header) == 2:
        sets, per_class = header
        if len(same) != 2 * sets * per_class:
            raise ValueError(
                f"{source}: the header promises {sets} folds x 2 x {per_class} pairs = "
                f"{2 * sets * per_class} pairs, the file has {len(same)}. Received: header={header}"
            )
        folds = np.repeat(np.arange(sets), 2 * per_class)
        expected = np.tile(np.repeat([True, False], per_class), sets)
        bad = np.flatnonzero(expected != same_arr)
        if bad.size:
            raise _error(
                source,
                lines[bad[0]],
                f"expected a {'same' if expected[bad[0]] else 'different'} pair here "
                f"(header: {sets} folds of {per_class} same then {per_class} different)",
                rows[bad[0]][1],
            )
        has_folds = True
    else:
        if len(header) == 1 and len(same) != 2 * header[0]:
            raise ValueError(
                f"{source}: the header promises 2 x {header[0]} pairs, the file has {len(same)}. "
                f"Received: header={header}"
            )
        folds = _stratified(same_arr, num_folds, source)
        has_folds = False
    return PairList(
        tuple(left),
        tuple(right),
        same_arr,
        np.asarray(folds, dtype=np.int64),
        np.asarray(lines, dtype=np.int64),
        source,
        has_folds,
    )


def _parse_generic(rows, source: str, num_folds: int) -> PairList:
    left, right, same, lines, folds = [], [], [], [], []
    for line, tokens in rows:
        if len(tokens) not in (3, 4):
            raise _error(source, line, "expected `path1 path2 same [fold]`", tokens)
        label = _SAME_WORDS.get(tokens[2].lower())
        if label is None:
            raise _error(
                source, line, f"the label {tokens[2]!r} is not one of {sorted(_SAME_WORDS)}", tokens
            )
        if len(tokens) == 4:
            if not _is_int(tokens[3]):
                raise _error(source, line, f"the fold {tokens[3]!r} is not an integer", tokens)
            if abs(int(tokens[3])) >= 2**31:
                raise _error(source, line, f"the fold {tokens[3]!r} is out of range (|fold| < 2**31)", tokens)
            folds.append(int(tokens[3]))
        left.append(tokens[0])
        right.append(tokens[1])
        same.append(label)
        lines.append(line)
    if folds and len(folds) != len(lines):
        first = lines[len(folds)] if len(folds) < len(lines) else lines[0]
        raise ValueError(
            f"{source}, line {first}: either every line has a fold column or none does. "
            f"Received: {len(folds)} of {len(lines)} lines with a fold"
        )
    same_arr = np.asarray(same, dtype=bool)
    if folds:
        # Renumber the fold ids of the file (any integers) to 0..K-1 in sorted order.
        _, fold_index = np.unique(np.asarray(folds), return_inverse=True)
        fold_arr = fold_index.astype(np.int64)
    else:
        fold_arr = _stratified(same_arr, num_folds, source)
    return PairList(
        tuple(left),
        tuple(right),
        same_arr,
        fold_arr,
        np.asarray(lines, dtype=np.int64),
        source,
        bool(folds),
    )


def parse_pairs(text: str, source: str = "<pairs>", fmt: str = "auto", num_folds: int = 10) -> PairList:
    """Parses a pair list from text.

    Args:
        text: str. The file contents.
        source: str. Name of the file, used in error messages.
        fmt: str. `"lfw"`, `"generic"` or `"auto"` (LFW when the first data line is an integer header
            or a `name n1 n2` / `name1 n1 name2 n2` line).
        num_folds: int. Folds to assign (stratified) when the file gives none.

    Returns:
        A `PairList`.

    Raises:
        ValueError: for a malformed line (its line number is in the message), an empty list, or a
            list with only one class of pairs.
    """
    if fmt not in ("auto", "lfw", "generic"):
        raise ValueError(f"fmt must be 'auto', 'lfw' or 'generic'. Received: fmt={fmt!r}")
    rows = _data_lines(text)
    if not rows:
        raise ValueError(f"{source}: no pairs found. Received: {len(text)} characters")
    if fmt == "auto":
        tokens = rows[0][1]
        lfw_header = all(_is_int(t) for t in tokens)
        lfw_pair = (len(tokens) == 3 and _is_int(tokens[1]) and _is_int(tokens[2])) or (
            len(tokens) == 4 and _is_int(tokens[1]) and _is_int(tokens[3]) and not _is_int(tokens[2])
        )
        fmt = "lfw" if lfw_header or lfw_pair else "generic"
    pairs = (
        _parse_lfw(rows, source, num_folds) if fmt == "lfw" else _parse_generic(rows, source, num_folds)
    )
    if not len(pairs):
        raise ValueError(f"{source}: the file has a header but no pairs. Received: format={fmt!r}")
    if pairs.same.all() or not pairs.same.any():
        raise ValueError(
            f"{source}: verification needs both same and different pairs. "
            f"Received: {int(pairs.same.sum())} same of {len(pairs)} pairs"
        )
    return pairs


def read_pairs(path: str | os.PathLike, fmt: str = "auto", num_folds: int = 10) -> PairList:
    """Reads a pair list file (LFW `pairs.txt` or the generic format; see the module docstring).

    Args:
        path: str or path-like. The pair list.
        fmt: str. `"auto"`, `"lfw"` or `"generic"`.
        num_folds: int. Folds to assign (stratified) when the file gives none.

    Returns:
        A `PairList` whose `source` is the file name.

    Raises:
        FileNotFoundError: `path` does not exist.
        ValueError: bytes that are not UTF-8, or a malformed list (see `parse_pairs`); the message
            names the file and line.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"Pair list not found. Received: path={str(path)!r}")
    data = path.read_bytes()
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as error:
        start = error.start + (3 if data.startswith(b"\xef\xbb\xbf") else 0)
        line = data.count(b"\n", 0, start) + 1
        raise ValueError(
            f"{path.name}, line {line}: expected UTF-8 text, found byte 0x{data[start]:02x}. "
            f"Received: path={str(path)!r}"
        ) from None
    return parse_pairs(text, source=path.name, fmt=fmt, num_folds=num_folds)
