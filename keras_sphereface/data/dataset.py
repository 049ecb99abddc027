"""Builds the `tf.data` input pipeline: TFRecords written by `records.py` -> `(images, labels)` batches.

Order of work (each stage parallel where it can be):
    files (shuffled per epoch) -> shard per input pipeline -> parallel interleave of shards,
    each shard read, parsed and decoded (aligned on the fly from stored landmarks with
    `align="landmarks"`, `align_tf.py`) -> record check (`record_checks.py`: a bad record, or a
    label outside `[0, num_classes)`, stops the pipeline with an error naming its file and index)
    -> optional cache -> shuffle buffer -> batch -> normalisation per batch -> prefetch.
    Per-image augmentation (`augment.py`) is fused into decoding, or comes after the cache when there is one.
"""

from __future__ import annotations

import os

import tensorflow as tf

from keras_sphereface.data.align import get_template
from keras_sphereface.data.align_tf import decode_image_tf, similarity_transform_tf, warp_to_template
from keras_sphereface.data.augment import Augmentation, augment_image
from keras_sphereface.data.face_source import ALIGN_MODES
from keras_sphereface.data.manifest import match_shards, read_num_classes
from keras_sphereface.data.record_checks import (
    STATUS_BAD_LABEL,
    STATUS_NO_LANDMARKS,
    STATUS_OK,
    STATUS_SHAPE_MISMATCH,
    check_shard_files,
    end_marker,
    read_shard,
)
from keras_sphereface.data.schema import parse_spec
from keras_sphereface.models.preprocessing import PIXEL_MEAN, PIXEL_SCALE

# `decode_image_tf`, `similarity_transform_tf`, `warp_to_template` (now in `align_tf`) and
# `read_num_classes` (now in `manifest`) stay importable from here.
__all__ = ["AUTOTUNE", "decode_image_tf", "read_num_classes", "similarity_transform_tf", "tfrecord_dataset",
           "warp_to_template"]

AUTOTUNE = tf.data.AUTOTUNE
# The `align` values of `tfrecord_dataset` (the first two of `ALIGN_MODES`): records hold crops, or photos
# with their landmarks.
# False and True are the older spellings of the two.
_RECORD_ALIGN_MODES = ALIGN_MODES[:2]


def _align_mode(align: str | bool) -> str:
    """`"aligned"` or `"landmarks"` for an `align` argument (False / True: their aliases)."""
    if isinstance(align, bool):
        return _RECORD_ALIGN_MODES[int(align)]
    if isinstance(align, str) and align in _RECORD_ALIGN_MODES:
        return align
    raise ValueError(f"align must be one of {list(_RECORD_ALIGN_MODES)}, or False / True for them (records are "
                     f"crops or photos with stored landmarks). Received: align={align!r}")


def tfrecord_dataset(
    pattern: str | list[str],
    batch_size: int,
    training: bool = True,
    image_size: tuple[int, int] = (112, 96),
    align: str | bool = "aligned",
    template: str = "sphereface",
    flip: bool = True,
    brightness: float = 0.0,
    contrast: float = 0.0,
    random_crop: float = 0.0,
    random_erase: float = 0.0,
    normalization: tuple[float, float] | None = (PIXEL_MEAN, PIXEL_SCALE),
    shuffle_buffer: int = 8192,
    seed: int | None = None,
    cache: bool | str = False,
    drop_remainder: bool | None = None,
    input_context: tf.distribute.InputContext | None = None,
    num_parallel_calls: int = AUTOTUNE,
    cycle_length: int | None = None,
    check_records: bool = True,
    num_classes: int | None = None,
) -> tf.data.Dataset:
    """A `tf.data.Dataset` of `(images, labels)` batches from TFRecords of `write_tfrecords`.

    Args:
        pattern: str or list of str. Glob pattern(s) of shards, e.g. `"out/train-*.tfrecord"`.
        batch_size: int. The global batch size; with `input_context`, each pipeline yields
            `input_context.get_per_replica_batch_size(batch_size)`.
        training: bool. Shuffle files and examples, augment, drop the last partial batch.
            False: file order, no augmentation, the last partial batch is kept.
        image_size: tuple `(height, width)`. Output size; with `align="aligned"`, stored images
            must already have it (else the error names file and record).
        align: str. How a stored image becomes the crop, in the words of
            `face_source.ALIGN_MODES`: `"aligned"` (default): the records hold aligned crops;
            `"landmarks"`: the records hold original photos, aligned on the fly with their stored
            landmarks (`template` and `image_size` choose the template). False and True are
            accepted as aliases of `"aligned"` and `"landmarks"`.
        template: str. `"sphereface"` or `"arcface"` (with `align="landmarks"`).
        flip: bool. Random horizontal flip when training (as in the SphereFace paper).
        brightness: float. Off (0) by default; else a random brightness offset in
            `[-brightness, brightness]` (0-255 pixel units) when training.
        contrast: float. Off (0) by default; else a random contrast factor in
            `[1 - contrast, 1 + contrast]` when training.
        random_crop: float in [0, 1). Off (0) by default; else a random crop of each side
            `1 - random_crop * u` of the image's (`u` uniform), resized back, when training.
        random_erase: float in [0, 1]. Off (0) by default; else the probability of erasing one
            random rectangle (2-25% of the image) to grey when training. The augmentations and
            their order: `keras_sphereface.data.augment`.
        normalization: tuple `(mean, scale)` or None. Output `(x - mean) / scale`; the default
            `(PIXEL_MEAN, PIXEL_SCALE)` is every zoo model's `preprocess_input` (`(x - 127.5) / 128`,
            the paper's); None gives `float32` pixels in `[0, 255]`.
        shuffle_buffer: int. Examples in the shuffle buffer (training).
        seed: int or None. With a seed, the whole output (order, flips) is deterministic.
        cache: bool or str. Cache decoded images in memory (True) or in a file (a path).
        drop_remainder: bool or None. Default: True when training.
        input_context: `tf.distribute.InputContext` or None. As given by
            `strategy.distribute_datasets_from_function`: shards files per input pipeline.
        num_parallel_calls: int. Parallelism of reading and decoding (default AUTOTUNE).
        cycle_length: int or None. Shards read at once; default twice the CPU count, at most 16
            (on 2 cores, 4 shards beat 16 by about 7%).
        check_records: bool. Detect bad records and name them (default). False skips the
            check, which is a little faster, and leaves TensorFlow's own error messages (labels
            are still checked).
        num_classes: int or None. Labels must lie in `[0, num_classes)`: a record outside stops
            the pipeline with an error naming its file, record, label and the range (on a GPU an
            out-of-range label would otherwise train silently wrong: its gather returns zeros).
            Pass the classifier head's `units`. None: read from the `labels.json` (or
            `manifest.json`) beside the shards (`read_num_classes`); negative labels are refused
            in any case.

    Returns:
        `tf.data.Dataset` of `(images, labels)`: `float32` `(batch, height, width, 3)` RGB and
        `int32` `(batch,)`.

    Raises:
        ValueError: no file matches, every file is empty, a shard whose size differs from the
            `manifest.json` beside it, fewer examples than one batch (per the manifest) when the
            last partial batch is dropped, fewer files than input pipelines, or bad arguments
            (e.g. an `align` that is not `"aligned"` or `"landmarks"`).
        keras_sphereface.data.manifest.ManifestError: an unreadable `manifest.json` or
            `labels.json` beside the shards.
    """
    warp = _align_mode(align) == "landmarks"
    files = match_shards(pattern)
    if batch_size < 1:
        raise ValueError(f"batch_size must be a positive integer. Received: batch_size={batch_size}")
    if num_classes is None:
        num_classes = read_num_classes(files)
    elif int(num_classes) < 1:
        raise ValueError(f"num_classes must be a positive integer. Received: num_classes={num_classes}")
    label_limit = -1 if num_classes is None else int(num_classes)
    counted = check_shard_files(files)
    height, width = (int(v) for v in image_size)
    if normalization is not None and float(normalization[1]) == 0.0:
        raise ValueError(f"normalization scale must not be 0. Received: normalization={normalization}")
    if drop_remainder is None:
        drop_remainder = training
    if drop_remainder and counted is not None and counted < batch_size:
        raise ValueError(
            f"The {len(files)} TFRecord file(s) hold {counted} examples (per their manifest.json), fewer than "
            f"one batch of {batch_size}, and the last partial batch is dropped: nothing would come out. "
            f"Use a smaller batch_size or drop_remainder=False. Received: pattern={pattern!r}"
        )
    if input_context is not None:
        if len(files) < input_context.num_input_pipelines:
            raise ValueError(
                f"{len(files)} TFRecord file(s) cannot be split over {input_context.num_input_pipelines} "
                f"input pipelines; write more shards. Received: pattern={pattern!r}"
            )
        batch_size = input_context.get_per_replica_batch_size(batch_size)
    template_points = tf.constant(get_template(template, (height, width)), tf.float32)
    spec = parse_spec(("image", "label", "landmarks"))

    augmentation = Augmentation(flip=bool(flip), random_crop=random_crop, brightness=brightness, contrast=contrast,
                                random_erase=random_erase)
    augmenting = training and augmentation.active
    # Augmentation is fused into decoding (cheapest), except when decoded images are cached:
    # then it must come after the cache, or every epoch would see the same flips.
    fuse_augmentation = augmenting and not cache

    def decode(record, is_end, record_seed):
        # The end-of-file marker is a valid record too (see `end_marker`): no branch for it.
        example = tf.io.parse_single_example(record, spec)
        image = decode_image_tf(example["image"])
        shape = tf.shape(image)
        label64 = example["label"]
        if warp:
            points = tf.reshape(example["landmarks"], (5, 2))
            has_points = tf.reduce_all(tf.math.is_finite(points))
            safe = tf.where(has_points, points, template_points)
            out = warp_to_template(image, safe, template_points, (height, width))
            status = tf.where(has_points, STATUS_OK, STATUS_NO_LANDMARKS)
        else:
            fits = tf.logical_and(tf.equal(shape[0], height), tf.equal(shape[1], width))
            out = tf.cond(fits, lambda: image, lambda: tf.zeros((height, width, 3), tf.uint8))
            status = tf.where(fits, STATUS_OK, STATUS_SHAPE_MISMATCH)
        label_ok = label64 >= 0 if label_limit < 0 else tf.logical_and(label64 >= 0, label64 < label_limit)
        bad_label = tf.logical_and(tf.logical_not(is_end), tf.logical_not(label_ok))
        status = tf.where(tf.logical_and(tf.equal(status, STATUS_OK), bad_label), STATUS_BAD_LABEL, status)
        out = tf.ensure_shape(out, (height, width, 3))
        if fuse_augmentation:
            out = augment_image(out, record_seed, augmentation)
        return out, tf.cast(label64, tf.int32), status, shape, is_end

    marker = end_marker(height, width, template_points) if check_records else b""
    files_ds = tf.data.Dataset.from_tensor_slices(files)
    if input_context is not None:
        files_ds = files_ds.shard(input_context.num_input_pipelines, input_context.input_pipeline_id)
    if training:
        files_ds = files_ds.shuffle(len(files), seed=seed, reshuffle_each_iteration=True)
    files_ds = tf.data.Dataset.zip(files_ds, _random_seeds(seed))
    deterministic = seed is not None or not training
    # Shards are decoded in parallel by the interleave; a record-level parallel map inside each
    # shard is only worth its threads when there are few shards.
    per_file_parallel = num_parallel_calls if len(files) < 4 else None
    examples = files_ds.interleave(
        lambda f, file_seed: read_shard(f, file_seed, decode, per_file_parallel, check_records, marker,
                                        label_limit),
        cycle_length=min(len(files), cycle_length or min(16, 2 * (os.cpu_count() or 1))),
        block_length=1,
        num_parallel_calls=num_parallel_calls,
        deterministic=deterministic,
    )
    if cache:
        examples = examples.cache("" if cache is True else str(cache))
    if training:
        examples = examples.shuffle(shuffle_buffer, seed=seed, reshuffle_each_iteration=True)
    if augmenting and not fuse_augmentation:
        examples = tf.data.Dataset.zip(examples, _random_seeds(None if seed is None else seed + 1)).map(
            lambda example, element_seed: (
                augment_image(example[0], tf.stack([element_seed, 0]), augmentation), *example[1:]
            ),
            num_parallel_calls=num_parallel_calls, deterministic=deterministic,
        )
    batches = examples.batch(batch_size, drop_remainder=drop_remainder, num_parallel_calls=num_parallel_calls,
                             deterministic=deterministic)
    mean, scale = (0.0, 1.0) if normalization is None else (float(normalization[0]), float(normalization[1]))
    # Elements still carry the end-of-file flag (always False here); it is dropped per batch.
    batches = batches.map(lambda images, labels, _: ((tf.cast(images, tf.float32) - mean) / scale, labels),
                          num_parallel_calls=num_parallel_calls, deterministic=deterministic)
    return batches.prefetch(AUTOTUNE)


def _random_seeds(seed: int | None) -> tf.data.Dataset:
    """An endless stream of `int64` seeds, different in each epoch, reproducible given `seed`."""
    return tf.data.Dataset.random(seed=seed, rerandomize_each_iteration=True)

