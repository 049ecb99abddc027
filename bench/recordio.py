"""Throughput of `write_tfrecords` (`ksf make-tfrecords`) from an insightface RecordIO folder (not a timed test).

Builds a RecordIO training set (insightface's layout: header record, images, identity records) of
`--images` real LFW faces, aligned to 112x112 with the ArcFace template as insightface's sets are
and repeated, in a temporary folder, with a small writer of its own (below). Then times
`write_tfrecords` from it (16 shards, the default byte-copy check `"header"`) with 1 and 2 workers,
after one untimed run that warms the page cache. Prints one JSON line per configuration
(`bench/_report.py`).

    KSF_DATA_DIR=../shared/data python bench/recordio.py [--images 20000] [--faces 500] [--work-dir DIR]
"""

from __future__ import annotations

import argparse
import os
import shutil
import struct
import sys
import tempfile
import time
from pathlib import Path

from _report import emit  # bench/_report.py: the header every bench script reports

_MAGIC = struct.pack("<I", 0xCED7230A)


def _frame(payload: bytes) -> bytes:
    """One RecordIO record: split where the magic sits 4-aligned in `payload` (dmlc-core's writer rule)."""
    pieces, start, at = [], 0, payload.find(_MAGIC)
    while at >= 0:
        if at % 4 == 0:
            pieces.append(payload[start:at])
            start = at + 4
        at = payload.find(_MAGIC, at + 1)
    pieces.append(payload[start:])
    out = bytearray()
    for number, piece in enumerate(pieces):
        cflag = 0 if len(pieces) == 1 else 1 if number == 0 else 3 if number == len(pieces) - 1 else 2
        out += _MAGIC + struct.pack("<I", cflag << 29 | len(piece)) + piece + b"\0" * (-len(piece) % 4)
    return bytes(out)


def _record(labels: list[float], image: bytes = b"") -> bytes:
    if len(labels) == 1:
        return struct.pack("<IfQQ", 0, labels[0], 0, 0) + image
    return struct.pack("<IfQQ", len(labels), 0.0, 0, 0) + struct.pack(f"<{len(labels)}f", *labels) + image


def _faces(lfw: Path, count: int) -> list[bytes]:
    """`count` LFW faces aligned to the 112x112 ArcFace template, as JPEG (quality 95) bytes."""
    from keras_sphereface.data.align import align_face, load_image_rgb, read_landmarks
    from keras_sphereface.data.images import encode_image

    points = read_landmarks(lfw / "landmarks.txt")
    names = sorted(points)[:count]
    return [encode_image(align_face(load_image_rgb(lfw / "images" / name), points[name], "arcface", (112, 112)),
                         "jpeg", quality=95) for name in names]


def write_set(folder: Path, faces: list[bytes], images: int, per_class: int) -> int:
    """Writes `train.rec`, `train.idx`, `property`: `images` records cycling through `faces`, `per_class` a class.

    Returns:
        int. The number of classes.
    """
    folder.mkdir(parents=True, exist_ok=True)
    num_classes = -(-images // per_class)
    first_identity = images + 1
    records = [_record([float(first_identity), float(first_identity + num_classes)])]
    records += [_record([float(i // per_class)], faces[i % len(faces)]) for i in range(images)]
    records += [_record([float(1 + c * per_class), float(1 + min(images, (c + 1) * per_class))])
                for c in range(num_classes)]
    with open(folder / "train.rec", "wb") as rec, open(folder / "train.idx", "w") as idx:
        for key, payload in enumerate(records):
            idx.write(f"{key}\t{rec.tell()}\n")
            rec.write(_frame(payload))
    (folder / "property").write_text(f"{num_classes},112,112\n")
    return num_classes


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=20000)
    parser.add_argument("--faces", type=int, default=500, help="distinct LFW faces, repeated")
    parser.add_argument("--per-class", type=int, default=20)
    parser.add_argument("--shards", type=int, default=16)
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--work-dir", type=Path, default=None)
    args = parser.parse_args()
    data_dir = os.environ.get("KSF_DATA_DIR")
    if not data_dir:
        sys.exit("Set KSF_DATA_DIR to the shared data folder (it holds lfw/).")
    from keras_sphereface.data.records import write_tfrecords

    work = Path(tempfile.mkdtemp(prefix="bench_recordio_", dir=args.work_dir))
    try:
        faces = _faces(Path(data_dir) / "lfw", args.faces)
        num_classes = write_set(work / "set", faces, args.images, args.per_class)
        rec_bytes = (work / "set" / "train.rec").stat().st_size
        write_tfrecords(work / "set", work / "warm", num_shards=args.shards, workers=max(args.workers))
        for workers in args.workers:
            out = work / f"out{workers}"
            start = time.perf_counter()
            manifest = write_tfrecords(work / "set", out, num_shards=args.shards, workers=workers)
            seconds = time.perf_counter() - start
            written = manifest["splits"]["train"]["num_examples"]
            emit({"what": f"write_tfrecords from a RecordIO folder (check=header, {args.shards} shards)",
                  "images_per_s": round(written / seconds), "precision": "n/a", "batch": "n/a",
                  "images": written, "seconds": round(seconds, 2), "workers": workers,
                  "classes": num_classes, "rec_mib": round(rec_bytes / 2**20, 1)})
            shutil.rmtree(out)
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
