"""Does `ksf train` converge with its defaults? The new user's runs on five LFW people, as one table.

Five LFW identities (the first five, alphabetically, with 5 to 15 photos) are aligned to 112x96 crops
from their landmarks (`ksf align`) and written as TFRecords (`ksf make-tfrecords`); then each row
trains from scratch with the base config's defaults and only the options of that row, as

    ksf train --tfrecords R --model sphere20 --head a-softmax --batch-size 8 --steps 30 --seed 1

One JSON line per row: whether it finished, the step of a non-finite loss, the loss and training
accuracy of the last logged interval, and ln(classes) (what an untrained head scores).

    KSF_DATA_DIR=../shared/data python bench/convergence.py [--rows issue|zoo] [--out out/bench/convergence]

`--rows zoo` trains every zoo model with every head (30 steps, batch 8) instead of the issue's rows.
"""

from __future__ import annotations

import argparse
import math
import os
import shutil
import tempfile
from pathlib import Path

from _report import emit

NUM_PEOPLE = 5
#: The issue's rows: (model, head, batch, steps, seed, resume_steps).
ISSUE_ROWS = [
    ("sphere20", "a-softmax", 8, 30, 1, None),
    ("sphere20", "a-softmax", 8, 30, 2, None),
    ("sphere4", "a-softmax", 8, 30, 1, None),
    ("sphere4", "a-softmax", 8, 30, 2, None),
    ("sphere4", "a-softmax", 8, 30, 3, None),
    ("sphere4", "a-softmax", 8, 4, 1, 8),
    ("sphere4", "arcface", 8, 30, 1, None),
]


def prepare(lfw: Path, out: Path) -> str:
    """Aligns five LFW people and writes their TFRecords under `out`; returns the shards' glob."""
    from keras_sphereface.data.align import read_landmarks
    from keras_sphereface.data.align_folder import align_folder
    from keras_sphereface.data.records import write_tfrecords

    records = out / "records"
    if (records / "manifest.json").is_file():
        return str(records / "train-*.tfrecord")
    people = [p for p in sorted(os.listdir(lfw / "images")) if 5 <= len(os.listdir(lfw / "images" / p)) <= 15]
    photos = out / "photos"
    for person in people[:NUM_PEOPLE]:
        shutil.copytree(lfw / "images" / person, photos / person, dirs_exist_ok=True)
    points = read_landmarks(lfw / "landmarks.txt")
    landmarks = out / "landmarks.txt"
    with open(landmarks, "w", encoding="utf-8") as handle:
        for name in sorted(points):
            if name.split("/")[0] in people[:NUM_PEOPLE]:
                handle.write(name + "\t" + "\t".join(f"{v:.2f}" for v in points[name].reshape(-1)) + "\n")
    align_folder(photos, out / "aligned", landmarks=landmarks, progress=False)
    write_tfrecords(out / "aligned", records, num_shards=2, workers=1)
    return str(records / "train-*.tfrecord")


def run_row(records: str, model: str, head: str, batch: int | None, steps: int, seed: int,
            resume_steps: int | None, work: Path) -> dict:
    """Trains one row with the defaults (and resumes to `resume_steps` when given); returns its figures."""
    from keras_sphereface.training import NonFiniteLossError, load_recipe, read_records_info, train

    classes = read_records_info(records).num_classes
    out = work / f"{model}_{head}_{batch}_{steps}_{seed}"
    shutil.rmtree(out, ignore_errors=True)
    options = {"tfrecords": records, "model": model, "head": head, "batch_size": batch, "seed": seed,
               "out": str(out), "progress": False, "log_every": 1}
    command = f"ksf train --model {model} --head {head}" + (f" --batch-size {batch}" if batch else "") + \
              f" --steps {steps} --seed {seed}"
    row = {"what": "ksf train defaults on 5 LFW identities", "command": command, "classes": classes,
           "ln_classes": round(math.log(classes), 4), "batch": batch or load_recipe(None).batch_size,
           "precision": "float32"}
    try:
        result = None
        for length in (steps, resume_steps):
            if length is not None:
                result = train(load_recipe(None, steps=length, **options))
        row.update(finished=True, non_finite_step=None, step=result.step, loss=round(result.loss, 4),
                   accuracy=round(result.accuracy, 4), lr=load_recipe(None, **options).lr)
        if resume_steps:
            row["command"] += f", then --steps {resume_steps} (resume)"
    except NonFiniteLossError as error:
        row.update(finished=False, non_finite_step=error.step, step=error.step, loss=None, accuracy=None)
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", choices=("issue", "zoo"), default="issue")
    parser.add_argument("--out", default=None, help="Where the records and runs go (default: a temporary folder).")
    args = parser.parse_args()
    lfw = Path(os.environ["KSF_DATA_DIR"]) / "lfw"
    work = Path(args.out) if args.out else Path(tempfile.mkdtemp(prefix="ksf-convergence-"))
    records = prepare(lfw, work / "data")
    if args.rows == "issue":
        rows = ISSUE_ROWS
    else:
        from keras_sphereface.models.zoo import MODEL_NAMES
        from keras_sphereface.training import HEAD_NAMES

        rows = [(model, head, 8, 30, 1, None) for model in MODEL_NAMES for head in HEAD_NAMES]
    for row in rows:
        emit(run_row(records, *row, work=work / "runs"))


if __name__ == "__main__":
    main()
