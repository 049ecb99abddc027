"""`EmbeddingTable`: one embedding row per image file, and its writers (`.npy` + `.index.tsv`, `.csv`, `.npz`)."""

from __future__ import annotations

import csv
import dataclasses
import io
import os
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from keras_sphereface.utils.atomic import atomic_path, atomic_write

if TYPE_CHECKING:
    from keras_sphereface.inference.batch import EmbeddingStats

#: Formats `write_embeddings` writes, by file suffix.
OUTPUT_SUFFIXES = (".npy", ".csv", ".npz")


@dataclasses.dataclass
class EmbeddingTable:
    """One row per input image, in input order.

    Attributes:
        paths: list of str. The image paths as given / found.
        embeddings: float32 `(num_images, D)`. Unit-norm rows; NaN rows where `errors` is set.
        errors: list of (str or None). Why an image has no embedding, None when it has one.
        model: str. What embedded them.
        stats: `EmbeddingStats` or None. Forward passes and cache hits of the run that made the table.
    """

    paths: list[str]
    embeddings: np.ndarray
    errors: list[str | None]
    model: str = ""
    stats: EmbeddingStats | None = None

    @property
    def ok(self) -> np.ndarray:
        """bool `(num_images,)`: which rows hold an embedding."""
        return np.array([e is None for e in self.errors], dtype=bool)

    @property
    def failures(self) -> list[tuple[str, str]]:
        """`(path, reason)` of every image without an embedding."""
        return [(p, e) for p, e in zip(self.paths, self.errors, strict=True) if e is not None]

    def status(self) -> list[str]:
        """`"ok"` or the reason, per row."""
        return ["ok" if e is None else e for e in self.errors]


def embeddings_csv(table: EmbeddingTable) -> str:
    """CSV text: header `path,status,e0,...`, one row per image (empty values where there is no embedding)."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(["path", "status", *(f"e{i}" for i in range(table.embeddings.shape[1]))])
    for path, status, ok, row in zip(table.paths, table.status(), table.ok, table.embeddings, strict=True):
        writer.writerow([path, status, *((f"{v:.8g}" for v in row) if ok else [""] * len(row))])
    return buffer.getvalue()


def write_embeddings(table: EmbeddingTable, out: str | os.PathLike) -> list[Path]:
    """Writes `table` atomically; the format follows the suffix of `out`.

    - `.npy`: float32 `(num_images, D)` (NaN rows for failures) and `<stem>.index.tsv` beside it
      (`row`, `path`, `status` per line), since `.npy` holds no strings;
    - `.csv`: `embeddings_csv`;
    - `.npz`: arrays `embeddings` float32 `(num_images, D)`, `paths` and `status` str `(num_images,)`.

    Returns:
        The written paths.

    Raises:
        ValueError: `out` has none of `OUTPUT_SUFFIXES`.
    """
    out = Path(out)
    suffix = out.suffix.lower()
    if suffix not in OUTPUT_SUFFIXES:
        raise ValueError(f"--out must end with {', '.join(OUTPUT_SUFFIXES)}. Received: out={str(out)!r}")
    if suffix == ".csv":
        with atomic_write(out) as handle:
            handle.write(embeddings_csv(table))
        return [out]
    if suffix == ".npz":
        with atomic_path(out) as tmp:
            np.savez(tmp, embeddings=table.embeddings, paths=np.asarray(table.paths), status=np.asarray(table.status()))
        return [out]
    index = out.with_name(out.stem + ".index.tsv")
    with atomic_path(out) as tmp:
        np.save(tmp, table.embeddings)
    with atomic_write(index) as handle:
        handle.write("row\tpath\tstatus\n")
        for row, (path, status) in enumerate(zip(table.paths, table.status(), strict=True)):
            handle.write(f"{row}\t{path}\t{status}\n")
    return [out, index]
