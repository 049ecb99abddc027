"""`enroll_folder` and `search_images`: face images -> a `Gallery` on disk, and probes -> who they are.

The libraries behind `ksf enroll` and `ksf search`. Images are cropped and embedded exactly as `ksf
embed` does it (`image_files.files_source` + `files.embed_image_files`: one `FaceSource`, the batches
and cache of `embed_images`); an image without a usable face is named, skipped and counted, never
enrolled or searched. Everything cheap (the model against the gallery, duplicate ids) is checked before
the first image is embedded, and the gallery on disk changes only by one atomic save at the end.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from keras_sphereface.data.align_folder import list_images, no_image_error
from keras_sphereface.inference.cache import open_cache
from keras_sphereface.inference.embedder import Embedder
from keras_sphereface.inference.files import embed_image_files
from keras_sphereface.inference.gallery import Gallery, GalleryError, GalleryModel
from keras_sphereface.inference.image_files import collect_images, files_source
from keras_sphereface.inference.load import open_face_model
from keras_sphereface.inference.verify import decision_threshold

if TYPE_CHECKING:
    from keras_sphereface.utils.types import ModelLike

#: What `search_images` names a probe whose best score is not above the threshold.
UNKNOWN = "unknown"


@dataclasses.dataclass(frozen=True)
class EnrollReport:
    """What `enroll_folder` did.

    Attributes:
        gallery: str. The gallery folder.
        enrolled: int. Rows added (replacements included).
        replaced: int. Rows that replaced an enrolled image id.
        skipped: list of `(path, reason)`. Images without a usable face, or outside an identity folder.
        rows: int. Rows in the gallery after the save.
        identities: int. Identities in the gallery after the save.
        created: bool. Whether the gallery was new.
    """

    gallery: str
    enrolled: int
    replaced: int
    skipped: list[tuple[str, str]]
    rows: int
    identities: int
    created: bool

    def summary(self) -> str:
        """One line for the terminal."""
        verb = "created" if self.created else "updated"
        replaced = f" ({self.replaced} replaced)" if self.replaced else ""
        return (f"{self.gallery}: {verb}, {self.enrolled} faces enrolled{replaced}, {len(self.skipped)} skipped; "
                f"{self.rows} faces of {self.identities} identities in the gallery")


def _identity_images(folder: Path) -> tuple[list[str], list[tuple[str, str]]]:
    """`(ids, skipped)`: images `<identity>/...` under `folder` (as `ksf align` lists them), and loose files."""
    found = list_images(folder)
    if not found:
        raise no_image_error(folder)
    ids = [rel for rel in found if "/" in rel]
    skipped = [(str(folder / rel), "not inside an identity folder (FOLDER/<identity>/<image>)")
               for rel in found if "/" not in rel]
    return ids, skipped


def _open_gallery(path: Path, model: GalleryModel, dtype: str | None) -> tuple[Gallery, bool]:
    """The gallery at `path` (checked against `model`), or a new one; `(gallery, created)`."""
    if not path.exists():
        return Gallery(model, dtype or "float32"), True
    gallery = Gallery.load(path, model=model)
    if dtype is not None and dtype != gallery.dtype:
        raise GalleryError(f"{path} stores {gallery.dtype} vectors; a gallery keeps the storage it was created "
                           f"with. Received: dtype={dtype!r}")
    return gallery, False


def enroll_folder(
    gallery: str | os.PathLike,
    folder: str | os.PathLike,
    model: ModelLike | Embedder,
    *,
    weights: str | os.PathLike | None = None,
    align: str = "aligned",
    landmarks: str | os.PathLike | None = None,
    detector: Any = None,
    replace: bool = False,
    dtype: str | None = None,
    batch_size: int = 32,
    cache_dir: str | os.PathLike | bool | None = False,
    workers: int = 2,
) -> EnrollReport:
    """Enrolls `folder/<identity>/<image>` into the gallery folder `gallery` (created when missing).

    Args:
        gallery: str or path-like. The gallery folder.
        folder: str or path-like. One sub-folder per identity (searched as `ksf align` searches); an image's
            id is its path relative to `folder`, e.g. `"Alice/0001.jpg"`.
        model: a zoo name, `.keras` file, export folder or `keras.Model` (`open_face_model`), or an `Embedder`.
        weights: str, path-like or None. Zoo models only.
        align: str. One of `keras_sphereface.data.face_source.ALIGN_MODES` (`"aligned"` crops, `"landmarks"`
            with `landmarks`, `"detect"`).
        landmarks: str, path-like or None. The landmark file of `"landmarks"`.
        detector: object or None. A face detector for `"detect"` (default MTCNN).
        replace: bool. Replace enrolled rows with the same image ids, instead of refusing them.
        dtype: str or None. Storage of a new gallery (`STORAGE_DTYPES`); None: float32, or the existing one's.
        batch_size: int. Images per forward pass.
        cache_dir: str, path-like, bool or None. The embedding cache (`open_cache`); False: none.
        workers: int. Threads that read, decode and align images.

    Returns:
        An `EnrollReport`.

    Raises:
        GalleryError: the gallery was made by another model, is unreadable, or ids are already enrolled.
        ValueError: no image at all, or no image with a usable face (the gallery is then left as it was).
    """
    gallery_path, folder = Path(gallery), Path(folder)
    ids, skipped = _identity_images(folder)
    embedder = open_face_model(model, weights, batch_size)
    store, created = _open_gallery(gallery_path, GalleryModel.of_embedder(embedder), dtype)
    enrolled = set(store.image_ids).intersection(ids)
    if enrolled and not replace:
        shown = sorted(enrolled)[:5]
        raise GalleryError(f"{len(enrolled)} images of {folder} are already enrolled in {gallery_path} (e.g. {shown}); "
                           f"pass --replace (replace=True) to replace them. Received: image ids={shown}")
    paths = [folder / rel for rel in ids]
    if not paths:
        raise ValueError(f"No image inside an identity folder of {folder} (FOLDER/<identity>/<image>). "
                         f"Received: {len(skipped)} loose images")
    source = files_source(embedder, paths, align, landmarks, detector)
    table = embed_image_files(embedder, paths, source, batch_size, open_cache(cache_dir, embedder.fingerprint),
                              workers)
    skipped += table.failures
    ok = table.ok
    if not ok.any():
        raise ValueError(f"No face of {folder} could be enrolled ({len(skipped)} images skipped; the first: "
                         f"{skipped[0][0]}: {skipped[0][1]}); {gallery_path} is unchanged. "
                         f"Received: {len(paths)} images")
    chosen = [rel for rel, good in zip(ids, ok, strict=True) if good]
    replaced = store.add(table.embeddings[ok], [rel.split("/", 1)[0] for rel in chosen], chosen, replace=replace)
    store.save(gallery_path)
    return EnrollReport(str(gallery_path), len(chosen), replaced, skipped, len(store), len(store.identities), created)


@dataclasses.dataclass(frozen=True)
class ProbeResult:
    """One probe image searched in a gallery.

    Attributes:
        path: str. The image.
        identity: str or None. The best match's identity, `UNKNOWN` when its score is not above the
            threshold, None without a threshold (see `SearchReport.threshold_origin`) or without a face.
        matches: list of `(identity, image_id, score)`. The top-k gallery rows, best first.
        error: str or None. Why the image has no embedding (then `matches` is empty).
    """

    path: str
    identity: str | None
    matches: list[tuple[str, str, float]]
    error: str | None = None


@dataclasses.dataclass(frozen=True)
class SearchReport:
    """What `search_images` found.

    Attributes:
        probes: list of `ProbeResult`, in input order.
        threshold: float or None. The cosine a match must exceed to be named.
        threshold_origin: str. Where the threshold came from (or why there is none).
        gallery_rows: int. Rows searched.
        backend: str. `"exact"` or `"faiss"`.
    """

    probes: list[ProbeResult]
    threshold: float | None
    threshold_origin: str
    gallery_rows: int
    backend: str

    @property
    def failures(self) -> list[tuple[str, str]]:
        """`(path, reason)` of each probe without a usable face."""
        return [(p.path, p.error) for p in self.probes if p.error is not None]

    def lines(self) -> list[str]:
        """The report as terminal lines: per probe its decision, then its top-k matches."""
        out = [f"threshold: {self.threshold_origin}"]
        for probe in self.probes:
            if probe.error is not None:
                out.append(f"{probe.path}: no face ({probe.error})")
                continue
            decision = probe.identity if probe.identity is not None else "(no decision without a threshold)"
            out.append(f"{probe.path}: {decision}")
            out.extend(f"  {rank}. {name}  {score:.4f}  ({image_id})"
                       for rank, (name, image_id, score) in enumerate(probe.matches, start=1))
        return out


def search_images(
    gallery: str | os.PathLike,
    images: Sequence[str | os.PathLike],
    model: ModelLike | Embedder,
    *,
    weights: str | os.PathLike | None = None,
    align: str = "aligned",
    landmarks: str | os.PathLike | None = None,
    detector: Any = None,
    top_k: int = 5,
    threshold: float | None = None,
    backend: str = "exact",
    batch_size: int = 32,
    workers: int = 2,
) -> SearchReport:
    """Embeds probe images and finds their top-k gallery matches; names the best one or `UNKNOWN`.

    Args:
        gallery: str or path-like. A gallery folder of `enroll_folder`.
        images: sequence of str or path-like. Image files and/or folders (`collect_images`).
        model, weights, align, landmarks, detector, batch_size, workers: as for `enroll_folder`; the model
            must be the gallery's (checked before any image is embedded).
        top_k: int. Matches per probe.
        threshold: float or None. A cosine in `[-1, 1]`; None: the export contract's threshold, else no
            decision (scores only).
        backend: str. `"exact"` or `"faiss"` (`Gallery.search`).

    Returns:
        A `SearchReport`.

    Raises:
        GalleryError: a missing, truncated or empty gallery, or one enrolled with another model.
        FileNotFoundError, ValueError: missing images, no images.
    """
    paths = collect_images(images)
    embedder = open_face_model(model, weights, batch_size)
    store = Gallery.load(gallery, model=GalleryModel.of_embedder(embedder))
    if len(store) == 0:
        raise GalleryError(f"The gallery {gallery} is empty: enroll faces first (ksf enroll). Received: 0 rows")
    table = embed_image_files(embedder, paths, files_source(embedder, paths, align, landmarks, detector), batch_size,
                              None, workers)
    value, origin = decision_threshold(embedder, threshold)
    ok = table.ok
    found = store.search(table.embeddings[ok], top_k, backend=backend) if ok.any() else None
    names = store.row_identities
    probes, row = [], 0
    for path, error, good in zip(table.paths, table.errors, ok, strict=True):
        if not good:
            probes.append(ProbeResult(path, None, [], error))
            continue
        matches = [(names[i], store.image_ids[i], float(s))
                   for i, s in zip(found.indices[row], found.scores[row], strict=True) if i >= 0]
        row += 1
        best = matches[0][2]
        identity = None if value is None else (matches[0][0] if best > value else UNKNOWN)
        probes.append(ProbeResult(path, identity, matches))
    return SearchReport(probes, value, origin, len(store), backend)

