"""Align a whole folder of photos (resumable, parallel, with a report). NumPy + OpenCV.

The TensorFlow-based MTCNN detector is imported only when `detect=True`.
"""

from __future__ import annotations

import dataclasses
import json
import os
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from keras_sphereface.data.align import align_face, get_template
from keras_sphereface.data.images import IMAGE_EXTENSIONS, encode_image, load_image_rgb
from keras_sphereface.data.landmarks import read_landmarks
from keras_sphereface.utils.atomic import atomic_write
from keras_sphereface.utils.disk import WriteError
from keras_sphereface.utils.sizes import parse_size

if TYPE_CHECKING:  # the detector module imports TensorFlow; it is loaded only when detecting
    from keras_sphereface.data.detect import FaceDetector

REPORT_NAME = "align_report.json"


def list_images(root: str | os.PathLike) -> list[str]:
    """Relative POSIX paths of the JPEG/PNG files under `root`, sorted; hidden names skipped.

    Symbolic links are followed, to folders as to files (a subset of a dataset is often a folder
    of links to identity folders). Each real folder is entered once: a link back to a folder
    already visited (a link loop such as `a/b/up -> ..`, or a second link to the same folder) is
    not entered again, so the walk always ends.

    Args:
        root: str or path-like. The folder to search.

    Returns:
        list of str: paths relative to `root` through the names as found (links not resolved),
        e.g. `"Aaron_Eckhart/Aaron_Eckhart_0001.jpg"`.
    """
    root = Path(root)
    found = []
    visited = {os.path.realpath(root)}
    for directory, subdirectories, files in os.walk(root, followlinks=True):
        kept = []
        for name in sorted(subdirectories):
            if name.startswith("."):
                continue
            real = os.path.realpath(os.path.join(directory, name))
            if real not in visited:
                visited.add(real)
                kept.append(name)
        subdirectories[:] = kept
        for name in files:
            if not name.startswith(".") and name.lower().endswith(IMAGE_EXTENSIONS):
                found.append((Path(directory) / name).relative_to(root).as_posix())
    return sorted(found)


def no_image_error(src: str | os.PathLike) -> ValueError:
    """The error for a source folder without any image: says where and how it looked.

    Args:
        src: str or path-like. The folder searched.

    Returns:
        ValueError (to raise) naming the folder, its absolute path and what was searched for.
    """
    src = Path(src)
    shown = f"{src} ({src.resolve()})" if not src.is_absolute() else str(src)
    suffixes = ", ".join(sorted({s.lstrip(".") for s in IMAGE_EXTENSIONS}))
    return ValueError(
        f"No image found under {shown}: searched every folder below it, following symbolic links, "
        f"for files ending in {suffixes} (any case), skipping hidden names (starting with '.'). "
        f"Received: src={os.fspath(src)!r}"
    )


@dataclasses.dataclass
class AlignReport:
    """What `align_folder` did. Written as JSON next to the aligned images.

    Attributes:
        total: int. Images found under the source folder.
        aligned: int. Crops written by this run.
        skipped_existing: int. Crops already complete from an earlier run (resumed).
        failures: list of dict. `{"path", "reason", "error"}` per image that produced no crop;
            reasons are `"unreadable"`, `"no_landmarks"` and `"no_face"`.
        detections: dict. Relative path -> record of the face chosen when a photo showed
            several (detector mode only).
        settings: dict. Source, destination, template, size, interpolation, landmarks source.
    """

    total: int = 0
    aligned: int = 0
    skipped_existing: int = 0
    failures: list[dict] = dataclasses.field(default_factory=list)
    detections: dict[str, dict] = dataclasses.field(default_factory=dict)
    settings: dict = dataclasses.field(default_factory=dict)

    @property
    def ok(self) -> bool:
        """True when every image found has a crop."""
        return not self.failures

    def to_json(self) -> dict:
        """The report as written to `align_report.json`: counts, failures by reason, settings.

        Returns:
            dict with `settings`, `total`, `aligned`, `skipped_existing`, `failed`, `failure_counts`,
            `failures` (sorted by path) and `multiple_faces`.
        """
        counts: dict[str, int] = {}
        for failure in self.failures:
            counts[failure["reason"]] = counts.get(failure["reason"], 0) + 1
        return {
            "settings": self.settings,
            "total": self.total,
            "aligned": self.aligned,
            "skipped_existing": self.skipped_existing,
            "failed": len(self.failures),
            "failure_counts": counts,
            "failures": sorted(self.failures, key=lambda f: f["path"]),
            "multiple_faces": dict(sorted(self.detections.items())),
        }


def _remove_stale_temporaries(dst: Path) -> None:
    """Removes half-written files that an interrupted run left behind (atomic_write temporaries)."""
    if not dst.is_dir():
        return
    for directory, _, files in os.walk(dst):
        for name in files:
            if name.startswith(".") and ".tmp-" in name:
                (Path(directory) / name).unlink(missing_ok=True)


def _previous_detections(report_path: Path) -> dict[str, dict]:
    try:
        return json.loads(report_path.read_text(encoding="utf-8")).get("multiple_faces", {})
    except (OSError, ValueError):
        return {}


def align_folder(
    src: str | os.PathLike,
    dst: str | os.PathLike,
    landmarks: str | os.PathLike | dict[str, np.ndarray] | None = None,
    detect: bool = False,
    template: str = "sphereface",
    size: tuple[int, int] | str = (112, 96),
    interpolation: str = "bilinear",
    workers: int = 1,
    jpeg_quality: int = 95,
    report_path: str | os.PathLike | None = None,
    progress: bool | Callable[[Iterable], Iterable] = True,
    detector: FaceDetector | None = None,
) -> AlignReport:
    """Aligns every image under `src` into `dst`, keeping the folder structure.

    Each crop is written atomically (a temporary file renamed when complete), so a crop that
    exists is complete: running again resumes, skipping those. Images that cannot be read,
    have no landmarks or show no face are listed in the report, never written.

    Args:
        src: str or path-like. Folder of photos, e.g. one sub-folder per identity.
        dst: str or path-like. Output folder; crops keep their relative path and extension
            (`.png` stays lossless PNG, others are JPEG).
        landmarks: str, path-like or dict. A landmark file (paths relative to `src`) or the
            dictionary `read_landmarks` returns. Exclusive with `detect`.
        detect: bool. Find landmarks with MTCNN (optional `mtcnn` package) instead.
        template: str. `"sphereface"` or `"arcface"`.
        size: tuple of 2 ints or str. Output `(height, width)`, or `"112x96"`.
        interpolation: str. Warp interpolation (see `align_face`).
        workers: int. Parallel threads (OpenCV releases the GIL while decoding and warping).
        jpeg_quality: int. JPEG quality of the crops, 1-100.
        report_path: str or path-like. Where the JSON report goes; default
            `dst/align_report.json`.
        progress: bool or callable. Show a progress bar (rich), or a wrapper such as `tqdm`.
        detector: object with a `landmarks(image_rgb)` method, used instead of a new
            `FaceDetector` when `detect=True`.

    Returns:
        `AlignReport`.

    Raises:
        ValueError: neither or both of `landmarks` / `detect`, bad template/size/workers, no image
            under `src`, or a landmark file that matches none of the images (paths not relative to
            `src`).
        FileNotFoundError: `src` or the landmark file is missing.
        WriteError: a crop or the report could not be written (disk full, read-only folder): names
            the file; every crop already in `dst` is complete, and running again resumes.
    """
    src, dst = Path(src), Path(dst)
    if not src.is_dir():
        raise FileNotFoundError(f"Source folder not found: {src}")
    if (landmarks is None) == (not detect):
        raise ValueError(
            "Give exactly one landmark source: a landmark file or detect=True. "
            f"Received: landmarks={landmarks!r}, detect={detect!r}"
        )
    size = parse_size(size)
    get_template(template, size)  # validates name and size before any work
    if workers < 1:
        raise ValueError(f"workers must be a positive integer. Received: workers={workers}")
    report_path = Path(report_path) if report_path is not None else dst / REPORT_NAME

    names = list_images(src)
    if not names:
        raise no_image_error(src)
    points = read_landmarks(landmarks) if isinstance(landmarks, (str, os.PathLike)) else landmarks
    if points is not None and names and not any(name in points for name in names):
        raise ValueError(
            f"None of the {len(names)} images under {src} has an entry in the landmark file; its "
            f"paths must be relative to the source folder (e.g. {names[0]!r}). "
            f"Received: first landmark path={next(iter(points), None)!r}"
        )
    if detect and detector is None:
        from keras_sphereface.data.detect import FaceDetector

        detector = FaceDetector()

    _remove_stale_temporaries(dst)
    report = AlignReport(total=len(names))
    report.settings = {
        "source": str(src),
        "destination": str(dst),
        "template": template,
        "size": list(size),
        "interpolation": interpolation,
        "landmarks": "mtcnn" if detect else (str(landmarks) if isinstance(landmarks, (str, os.PathLike))
                                             else "<dict>"),
        "channel_order": "RGB",
    }
    earlier = _previous_detections(report_path)

    def work(name: str) -> tuple[str, str, dict]:
        target = dst / name
        if target.is_file() and target.stat().st_size > 0:
            return name, "skipped", earlier.get(name, {})
        try:
            image = load_image_rgb(src / name)
        except (OSError, ValueError) as error:
            return name, "unreadable", {"error": str(error)}
        record: dict = {}
        if detector is not None:
            face, record = detector.landmarks(image)
            if face is None:
                return name, "no_face", {"error": "the detector found no face"}
        elif name in points:
            face = points[name]
        else:
            return name, "no_landmarks", {"error": "no line for this image in the landmark file"}
        crop = align_face(image, face, template=template, size=size, interpolation=interpolation)
        fmt = "png" if target.suffix.lower() == ".png" else "jpeg"
        with atomic_write(target, "wb") as handle:
            handle.write(encode_image(crop, fmt, quality=jpeg_quality))
        return name, "aligned", record

    try:
        with ThreadPoolExecutor(max_workers=workers) as pool:
            results = pool.map(work, names)
            for name, status, record in _with_progress(results, len(names), progress):
                if status == "aligned":
                    report.aligned += 1
                elif status == "skipped":
                    report.skipped_existing += 1
                else:
                    report.failures.append({"path": name, "reason": status, "error": record["error"]})
                    continue
                if record.get("faces", 1) > 1:
                    report.detections[name] = record
    except WriteError as error:
        raise error.with_hint(
            f"Every crop already in {dst} is complete (none is left half-written). Free some space or make the "
            "folder writable, then run the same command again: finished crops are skipped."
        ) from error.__cause__

    with atomic_write(report_path) as handle:
        json.dump(report.to_json(), handle, indent=2)
        handle.write("\n")
    return report


def _with_progress(results: Iterable, total: int, progress) -> Iterable:
    if callable(progress):
        yield from progress(results)
        return
    if not progress:
        yield from results
        return
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
               TimeRemainingColumn())
    with Progress(*columns) as bar:
        task = bar.add_task("Aligning", total=total)
        for item in results:
            bar.advance(task)
            yield item
