"""Writing sharded TFRecords of face images, with `labels.json`, a manifest and a report.

Each example holds the image's bytes exactly as stored (no re-encode unless resizing is asked),
so what trains is what was on disk. The sources (`sources.py`): a folder per identity, a list
file, or an insightface RecordIO folder (`train.rec` + `train.idx`, `recordio_set.py`); one
writer, one set of filters and one manifest serve all three. The feature keys and types: `schema.py`.
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import cv2
import numpy as np
import tensorflow as tf

from keras_sphereface.data.images import decode_image_rgb, encode_image, encoded_image_size, image_format
from keras_sphereface.data.landmarks import read_landmarks
from keras_sphereface.data.manifest import LABELS_NAME, MANIFEST_NAME
from keras_sphereface.data.recordio import RecordIOError
from keras_sphereface.data.recordio_set import is_recordio_folder
from keras_sphereface.data.schema import FEATURES, make_example
from keras_sphereface.data.sources import (
    ImageReader,
    SourceImage,
    collect_images,
    identity_order,
    read_identity_file,
    select_identities,
)
from keras_sphereface.utils.atomic import atomic_files, sha256_file
from keras_sphereface.utils.disk import WriteError, clear_write_errors
from keras_sphereface.version import __version__

FORMAT_VERSION = 1
REPORT_NAME = "report.json"
#: How each image is checked before it is written: decoded (`"decode"`), or its JPEG/PNG header read
#: for the size, a JPEG's end marker checked (`"header"`, no pixels decoded: a byte copy).
CHECKS = ("decode", "header")


def shard_name(split: str, index: int, num_shards: int) -> str:
    """`{split}-{index:05d}-of-{num_shards:05d}.tfrecord`, e.g. `train-00000-of-00016.tfrecord`."""
    return f"{split}-{index:05d}-of-{num_shards:05d}.tfrecord"


@dataclasses.dataclass(slots=True)
class _Task:
    image: SourceImage
    label: int
    landmarks: np.ndarray | None


def _encode(task: _Task, resize: tuple[int, int] | None, read: ImageReader,
            check: str) -> tuple[bytes, int, int, np.ndarray | None]:
    data = read(task.image)
    if resize is None and check == "header":
        return data, *encoded_image_size(data, source=task.image.key), task.landmarks
    decoded = decode_image_rgb(data, source=task.image.path)  # refuses corrupt or truncated files
    points = task.landmarks
    if resize is not None and decoded.shape[:2] != tuple(resize):
        height, width = resize
        scale = np.array([width / decoded.shape[1], height / decoded.shape[0]])
        decoded = cv2.resize(decoded, (width, height), interpolation=cv2.INTER_AREA)
        data = encode_image(decoded, image_format(data), quality=95)
        if points is not None:  # pixel centres: x' + 0.5 = s (x + 0.5)
            points = ((points.astype(np.float64) + 0.5) * scale - 0.5).astype(np.float32)
    return data, decoded.shape[0], decoded.shape[1], points


def _write_shard(tmp: Path, target: Path, tasks: list[_Task], resize, read: ImageReader, check: str) -> dict:
    """Writes one shard; returns its manifest entry (without `file`) and the images skipped."""
    skipped, written = [], 0
    with clear_write_errors(target), tf.io.TFRecordWriter(str(tmp)) as writer:
        for task in tasks:
            try:
                data, height, width, points = _encode(task, resize, read, check)
            except RecordIOError:
                raise  # a damaged .rec or index: stop, naming the record
            except (OSError, ValueError) as error:
                skipped.append({"path": task.image.key, "reason": "unreadable", "error": str(error)})
                continue
            writer.write(make_example(data, task.label, task.image.identity, task.image.key, height, width,
                                      points))
            written += 1
    return {"num_examples": written, "bytes": tmp.stat().st_size, "sha256": sha256_file(tmp), "skipped": skipped}


def _write_json(tmp: Path, target: Path, data: dict) -> None:
    with clear_write_errors(target), open(tmp, "w", encoding="utf-8") as handle:
        json.dump(data, handle, indent=1)
        handle.flush()
        os.fsync(handle.fileno())


def _remove_other_shards(out_dir: Path, split: str, keep: set[str]) -> None:
    pattern = re.compile(rf"^{re.escape(split)}-\d{{5}}-of-\d{{5}}\.tfrecord$")
    for path in out_dir.iterdir():
        if pattern.match(path.name) and path.name not in keep:
            path.unlink()


def write_tfrecords(
    src: str | os.PathLike,
    out_dir: str | os.PathLike,
    num_shards: int = 16,
    val_shards: int | None = None,
    seed: int = 0,
    landmarks: str | os.PathLike | dict[str, np.ndarray] | None = None,
    exclude: str | os.PathLike | set[str] | None = None,
    people: str | os.PathLike | set[str] | None = None,
    min_images: int = 1,
    val_fraction: float = 0.0,
    resize: tuple[int, int] | None = None,
    workers: int = 2,
    check: str | None = None,
) -> dict:
    """Writes a folder-per-identity tree, a list file or an insightface RecordIO folder as sharded TFRecords.

    Output in `out_dir`: `train-XXXXX-of-NNNNN.tfrecord` (and `val-...` when `val_fraction > 0`),
    `labels.json` (label -> identity, image count, split), `manifest.json` (examples, bytes and
    SHA-256 per shard, settings) and `report.json` (images skipped as unreadable or without
    landmarks, identities removed by each filter). All or nothing: every file is written under a
    temporary name and the files are renamed into place only when all are complete (the manifest
    last), so a failure (disk full, read-only folder) leaves an earlier output in `out_dir` as it
    was; shards of an earlier run with another shard count are removed after the renames.

    The output depends only on the inputs and `seed`: examples are shuffled with
    `numpy.random.default_rng(seed)` and dealt round-robin to shards, labels follow the sorted
    identity names (numerically sorted when all names are integers), train identities first.

    Args:
        src: str or path-like. A folder `src/<identity>/<image>`, a list file (`path label`), or a
            folder holding `train.rec` and `train.idx` (and `property`): insightface's RecordIO
            training sets, either layout (`recordio_set.py`); the identities are then the classes
            (integers, as text, e.g. in an `exclude` file) and the paths `train.rec#<key>`.
        out_dir: str or path-like. Output folder (created).
        num_shards: int. Number of training shards.
        val_shards: int. Number of validation shards; default `max(1, num_shards // 8)`.
        seed: int. Seeds the example order and the validation split.
        landmarks: landmark file or dict keyed like the source (`identity/file.jpg` relative
            to a folder tree, or the list file's paths). Images without landmarks are skipped.
        exclude: identity file or set. Identities to leave out (e.g. those in a test set).
        people: identity file or set (e.g. LFW `peopleDevTrain.txt`). Only these are kept.
        min_images: int. Keep identities with at least this many images.
        val_fraction: float. Fraction of identities held out for validation.
        resize: tuple `(height, width)` or None. Resize (area interpolation) and re-encode
            (JPEG quality 95 or PNG) images of another size; stored landmarks are scaled too.
        workers: int. Shards written in parallel.
        check: str or None. One of `CHECKS`: `"decode"` decodes every image (corrupt ones are
            skipped); `"header"` reads only the JPEG/PNG header (size, a JPEG's end marker), a
            byte copy. None: `"header"` for a RecordIO folder, `"decode"` otherwise. With `resize`,
            images are always decoded.

    Returns:
        dict, the manifest.

    Raises:
        ValueError: bad options, bad list or landmark lines, an empty identity folder, landmarks
            for a RecordIO folder, or no image left after filtering.
        RecordIOError: a damaged `.rec`, `.idx` or `property` file, or a record whose label is not
            its class (a `ValueError`; names the file and the key or offset).
        FileNotFoundError: a missing source, list, landmark or identity file.
        WriteError: an output could not be written (disk full, read-only folder); names the file,
            and nothing in `out_dir` was replaced.
    """
    if num_shards < 1 or (val_shards is not None and val_shards < 1) or workers < 1:
        raise ValueError(f"num_shards, val_shards and workers must be positive. Received: num_shards="
                         f"{num_shards}, val_shards={val_shards}, workers={workers}")
    if resize is not None:
        resize = tuple(int(v) for v in resize)
        if len(resize) != 2 or min(resize) < 1:
            raise ValueError(f"resize must be (height, width). Received: resize={resize}")
    recordio = is_recordio_folder(src)
    check = check or ("header" if recordio else "decode")
    if check not in CHECKS:
        raise ValueError(f"check must be one of {list(CHECKS)}. Received: check={check!r}")
    if recordio and landmarks is not None:
        raise ValueError(f"{src} is a RecordIO training set, whose images are aligned crops: landmarks do not "
                         f"apply. Received: landmarks={landmarks!r}")
    out_dir = Path(out_dir)
    images = collect_images(src)
    exclude_set = read_identity_file(exclude) if isinstance(exclude, (str, os.PathLike)) else exclude
    people_set = read_identity_file(people) if isinstance(people, (str, os.PathLike)) else people
    selection = select_identities(images, exclude=exclude_set, include=people_set, min_images=min_images,
                                  val_fraction=val_fraction, seed=seed)
    if not selection.train:
        raise ValueError(f"No image left to write after filtering {len(images)} images from {src}. "
                         f"Received: min_images={min_images}, exclude={exclude!r}, people={people!r}")
    points = read_landmarks(landmarks) if isinstance(landmarks, (str, os.PathLike)) else landmarks

    train_ids = identity_order({i.identity for i in selection.train})
    val_ids = identity_order({i.identity for i in selection.val})
    labels = {identity: index for index, identity in enumerate([*train_ids, *val_ids])}
    rng = np.random.default_rng(seed)
    skipped: list[dict] = []
    splits = {"train": (selection.train, num_shards)}
    if selection.val:
        splits["val"] = (selection.val, val_shards or max(1, num_shards // 8))

    with clear_write_errors(out_dir):
        out_dir.mkdir(parents=True, exist_ok=True)
    manifest_splits, written_per_identity, kept = {}, dict.fromkeys(labels, 0), {}
    read = ImageReader()
    try:
        with atomic_files() as stage:
            for split, (split_images, shards) in splits.items():
                tasks = []
                for image in split_images:
                    if points is not None and image.key not in points:
                        skipped.append({"path": image.key, "reason": "no_landmarks",
                                        "error": "no line for this image in the landmark file"})
                        continue
                    tasks.append(_Task(image, labels[image.identity],
                                       None if points is None else points[image.key]))
                order = rng.permutation(len(tasks))
                per_shard = [[tasks[i] for i in order[s::shards]] for s in range(shards)]
                names = [shard_name(split, s, shards) for s in range(shards)]
                temporaries = [stage(out_dir / name) for name in names]
                with ThreadPoolExecutor(max_workers=workers) as pool:
                    results = list(pool.map(lambda a: _write_shard(a[0], out_dir / a[1], a[2], resize, read, check),
                                            zip(temporaries, names, per_shard, strict=True)))
                shard_entries = []
                for name, shard_tasks, result in zip(names, per_shard, results, strict=True):
                    shard_skipped = result.pop("skipped")
                    skipped.extend(shard_skipped)
                    bad = {s["path"] for s in shard_skipped}
                    for task in shard_tasks:
                        if task.image.key not in bad:
                            written_per_identity[task.image.identity] += 1
                    shard_entries.append({"file": name, **result})
                kept[split] = set(names)
                ids = train_ids if split == "train" else val_ids
                manifest_splits[split] = {
                    "num_examples": sum(e["num_examples"] for e in shard_entries),
                    "num_classes": len(ids),
                    "label_range": [labels[ids[0]], labels[ids[-1]] + 1],
                    "pattern": f"{split}-*-of-{shards:05d}.tfrecord",
                    "shards": shard_entries,
                }

            classes = [{"label": labels[i], "identity": i, "count": written_per_identity[i],
                        "split": "train" if index < len(train_ids) else "val"}
                       for index, i in enumerate([*train_ids, *val_ids])]
            source_format = "recordio" if recordio else "folder" if Path(src).is_dir() else "list"
            settings = {"source": str(src), "source_format": source_format, "check": check, "seed": seed,
                        "min_images": min_images, "val_fraction": val_fraction,
                        "exclude": str(exclude) if isinstance(exclude, (str, os.PathLike)) else exclude is not None,
                        "people": str(people) if isinstance(people, (str, os.PathLike)) else people is not None,
                        "landmarks": points is not None, "resize": list(resize) if resize else None,
                        "channel_order": "RGB (decoded)", "stored_as": "resized, re-encoded" if resize else
                        "the records' image bytes" if recordio else "original file bytes"}
            manifest = {"format_version": FORMAT_VERSION, "created_by": f"keras_sphereface {__version__}",
                        "features": list(FEATURES), "num_classes": len(labels), "splits": manifest_splits,
                        "skipped": len(skipped), "settings": settings}
            outputs = (
                (LABELS_NAME, {"num_classes": len(labels), "classes": classes}),
                (REPORT_NAME, {"skipped": sorted(skipped, key=lambda s: s["path"]),
                               "removed_identities": selection.removed, "source_images": len(images)}),
                (MANIFEST_NAME, manifest),  # staged last, so renamed last
            )
            for name, data in outputs:
                _write_json(stage(out_dir / name), out_dir / name, data)
    except WriteError as error:
        raise error.with_hint(
            f"Nothing in {out_dir} was replaced (an earlier output there is unchanged) and no partial file is "
            "left; free some space or make the folder writable, then run the same command again."
        ) from error.__cause__
    finally:
        read.close()
    for split in ("train", "val"):
        _remove_other_shards(out_dir, split, kept.get(split, set()))
    return manifest
