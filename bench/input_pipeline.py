"""Input-pipeline throughput vs. a Sphere-20 training step, on LFW (not a timed test).

Prints one JSON line (`bench/_report.py`: figures, then hardware, versions, backend, threads and
the load average). Needs `$KSF_DATA_DIR/lfw` (images/ and landmarks.txt). Steps:
    1. align all LFW photos to 112x96 (`align_folder`) and write them as 16 TFRecord shards;
       write the original photos with their landmarks as 16 more shards;
    2. time `tfrecord_dataset` (read, decode, flip, normalise, batch 256) over the crops, the same
       with every augmentation of `data/augment.py` on, and with on-the-fly alignment over the
       originals: warm-up epoch, then `--epochs` epochs;
    3. time `train_on_batch` of Sphere-20 + MarginInnerProduct(m=4) on batches from step 2.

Images per CPU-second (`time.process_time`) is the per-core rate: it does not depend on what
else the machine runs, while the wall-clock rate does (the load average is printed too).

    KSF_DATA_DIR=../shared/data python bench/input_pipeline.py [--epochs 3] [--work-dir DIR]
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

from _report import emit  # bench/_report.py: the header every bench script reports

#: The augmented pipeline timed beside the plain one (the strongest run of docs/training.md's "Thirty minutes").
EVERY_AUGMENTATION = {"random_crop": 0.1, "brightness": 16.0, "contrast": 0.2, "random_erase": 0.5}


def _time_epochs(dataset, epochs: int) -> dict:
    for _ in dataset:  # warm-up: thread pools, autotuning, page cache
        pass
    images, wall, cpu = 0, time.perf_counter(), time.process_time()
    for _ in range(epochs):
        for batch, _labels in dataset:
            images += int(batch.shape[0])
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    return {"images": images, "images_per_s": round(images / wall), "images_per_cpu_s": round(images / cpu)}


def _time_training(pattern: str, num_classes: int, batch_size: int, steps: int) -> dict:
    import keras

    from keras_sphereface.data.dataset import tfrecord_dataset
    from keras_sphereface.layers import MarginInnerProduct
    from keras_sphereface.models import Sphere20, build_training_model

    model = build_training_model(Sphere20(weights=None, input_shape=(112, 96, 3), embedding_dim=512),
                                 MarginInnerProduct(num_classes, m=4))
    model.compile(optimizer=keras.optimizers.SGD(0.1, momentum=0.9),
                  loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    batches = iter(tfrecord_dataset(pattern, batch_size, seed=0).repeat())
    images, labels = next(batches)
    model.train_on_batch([images, labels], labels)  # build and trace
    wall, cpu = time.perf_counter(), time.process_time()
    for _ in range(steps):
        images, labels = next(batches)
        model.train_on_batch([images, labels], labels)
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    return {"batch_size": batch_size, "steps": steps, "images_per_s": round(steps * batch_size / wall, 2),
            "images_per_cpu_s": round(steps * batch_size / cpu, 2)}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=3, help="Timed epochs per pipeline.")
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--train-batch-size", type=int, default=64)
    parser.add_argument("--train-steps", type=int, default=3)
    parser.add_argument("--work-dir", help="Keep crops and records here (default: a temporary folder).")
    args = parser.parse_args(argv)

    data_root = os.environ.get("KSF_DATA_DIR")
    lfw = Path(data_root or "", "lfw")
    if not data_root or not (lfw / "landmarks.txt").is_file():
        emit({"skipped": "set KSF_DATA_DIR to the folder holding lfw/"})
        return 0

    from keras_sphereface.data.align_folder import align_folder
    from keras_sphereface.data.dataset import tfrecord_dataset
    from keras_sphereface.data.records import write_tfrecords

    work = Path(args.work_dir) if args.work_dir else Path(tempfile.mkdtemp(prefix="ksf-bench-"))
    try:
        started = time.perf_counter()
        align_report = align_folder(lfw / "images", work / "crops", landmarks=lfw / "landmarks.txt",
                                    workers=2, progress=False, report_path=work / "align_report.json")
        aligned_s = time.perf_counter() - started
        crops = write_tfrecords(work / "crops", work / "crop_records", num_shards=16)
        originals = write_tfrecords(lfw / "images", work / "photo_records", num_shards=16,
                                    landmarks=lfw / "landmarks.txt")
        crop_pattern = str(work / "crop_records" / "train-*.tfrecord")
        photo_pattern = str(work / "photo_records" / "train-*.tfrecord")

        aligned = _time_epochs(tfrecord_dataset(crop_pattern, args.batch_size, seed=0), args.epochs)
        augmented = _time_epochs(tfrecord_dataset(crop_pattern, args.batch_size, seed=0, **EVERY_AUGMENTATION),
                                 args.epochs)
        on_the_fly = _time_epochs(tfrecord_dataset(photo_pattern, args.batch_size, seed=0, align=True),
                                  args.epochs)
        training = _time_training(crop_pattern, crops["num_classes"], args.train_batch_size, args.train_steps)
        result = {
            "what": "tf.data pipeline over TFRecords of LFW (read, decode, flip, normalize, batch) "
                    "vs a Sphere-20 + A-Softmax training step",
            "images_per_s": aligned["images_per_s"],
            "batch": args.batch_size,
            "lfw_images": crops["splits"]["train"]["num_examples"],
            "photo_size": originals["settings"]["resize"] or "as stored",
            "align_folder_images_per_s": round(align_report.total / aligned_s),
            "pipeline_aligned_112x96": aligned,
            "pipeline_aligned_every_augmentation": {**augmented, "augmentation": EVERY_AUGMENTATION},
            "pipeline_on_the_fly_alignment": on_the_fly,
            "sphere20_train_step": training,
            "ratio_aligned_to_training": round(aligned["images_per_s"] / training["images_per_s"], 1),
            "ratio_augmented_to_training": round(augmented["images_per_s"] / training["images_per_s"], 1),
            "ratio_on_the_fly_to_training": round(on_the_fly["images_per_s"] / training["images_per_s"], 1),
        }
        emit(result)
    finally:
        if not args.work_dir:
            shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
