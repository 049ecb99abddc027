"""The SGD velocity of a margin head's class centres (Partial FC, sharded heads), in float32 or in 8 bits.

With Partial FC the centres and their momentum are what a head holds between steps: at 1M classes of
512 floats, 2.05 GB each. `centres_momentum = "int8"` (`TrainConfig`, `--centres-momentum`) keeps
the momentum as one signed byte per value and one float32 scale per row, the row's largest
magnitude: `velocity = code * scale / 127`, the codes rounded to the nearest integer (block-wise
8-bit optimizer state, a row being the block). A row's velocity is decoded when the row is sampled,
updated in float32 by `keras_sphereface.training.partial_fc.rows_sgd`, and encoded again; each
value then carries an error of at most `scale / 254`. At 512-d that is 516 bytes a row instead of
2,048 (0.25x the float32 momentum).

The momentum of a row that is not sampled is neither decoded nor touched (insightface's first
Partial FC), so its codes do not drift.
"""

from __future__ import annotations

import tensorflow as tf

from keras_sphereface.training.config import CENTRES_MOMENTUM

#: The largest code of the int8 storage (symmetric: -127..127).
INT8_LEVELS = 127.0


def momentum_bytes(units: int, dim: int, storage: str) -> int:
    """Bytes of the velocity of `units` rows of `dim` values stored as `storage` (`"float32"` or `"int8"`)."""
    return units * dim * 4 if storage == "float32" else units * (dim + 4)


class CentresMomentum(tf.Module):
    """The velocity of `(units, dim)` rows, gathered and scattered by row.

    Args:
        shape: `(units, dim)`.
        storage: str. One of `CENTRES_MOMENTUM`: `"float32"` or `"int8"` (codes and a scale per row).
        name: str. Name of the variables.

    Attributes:
        values: float32 `tf.Variable` `(units, dim)` (float32 storage).
        codes: int8 `tf.Variable` `(units, dim)`, scales: float32 `tf.Variable` `(units,)` (int8 storage).
    """

    def __init__(self, shape: tuple[int, int], storage: str = "float32", name: str = "centres_momentum"):
        if storage not in CENTRES_MOMENTUM:
            raise ValueError(f"`centres_momentum` must be one of {list(CENTRES_MOMENTUM)}. Received: {storage!r}")
        super().__init__(name=name)
        self.storage = storage
        if storage == "float32":
            self.values = tf.Variable(tf.zeros(shape, tf.float32), trainable=False, name=name)
        else:
            self.codes = tf.Variable(tf.zeros(shape, tf.int8), trainable=False, name=f"{name}_codes")
            self.scales = tf.Variable(tf.zeros(shape[:1], tf.float32), trainable=False, name=f"{name}_scales")

    @property
    def trackable(self) -> tf.Variable | tf.Module:
        """What a checkpoint keeps: the float32 variable itself (the checkpoint key of earlier runs), or this module."""
        return self.values if self.storage == "float32" else self

    def gather(self, index: tf.Tensor | None) -> tf.Tensor:
        """The float32 velocity of the rows `index` (int32 `(n,)`), `(n, dim)`; of every row when None."""
        if self.storage == "float32":
            return self.values.read_value() if index is None else tf.gather(self.values, index)
        codes = self.codes.read_value() if index is None else tf.gather(self.codes, index)
        scales = self.scales.read_value() if index is None else tf.gather(self.scales, index)
        return tf.cast(codes, tf.float32) * (scales / INT8_LEVELS)[:, None]

    def scatter(self, index: tf.Tensor | None, velocity: tf.Tensor) -> None:
        """Stores float32 `velocity` `(n, dim)` as the rows `index` (distinct; every row when None)."""
        if self.storage == "float32":
            if index is None:
                self.values.assign(velocity)
            else:
                self.values.scatter_update(tf.IndexedSlices(velocity, index))
            return
        codes, scales = encode_int8(velocity)
        if index is None:
            self.codes.assign(codes)
            self.scales.assign(scales)
        else:
            self.codes.scatter_update(tf.IndexedSlices(codes, index))
            self.scales.scatter_update(tf.IndexedSlices(scales, index))


def encode_int8(velocity: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
    """float32 `(n, dim)` -> (int8 codes `(n, dim)`, float32 scales `(n,)`): each row by its largest magnitude."""
    scales = tf.reduce_max(tf.abs(velocity), axis=1)
    codes = tf.round(velocity * tf.math.divide_no_nan(INT8_LEVELS, scales)[:, None])
    return tf.cast(tf.clip_by_value(codes, -INT8_LEVELS, INT8_LEVELS), tf.int8), scales


def saved_storage(reader: tf.train.CheckpointReader) -> str | None:
    """The momentum storage a checkpoint's centres were written with (`"float32"`, `"int8"`), or None: none kept."""
    keys = [key for key in reader.get_variable_to_shape_map() if key.startswith("centres_momentum")]
    if not keys:
        return None
    return "int8" if any("/codes/" in key for key in keys) else "float32"


def check_momentum_storage(reader: tf.train.CheckpointReader, path: str, storage: str) -> None:
    """Refuses to resume centres whose momentum was stored otherwise than this run stores it, saying how to resume.

    Raises:
        ValueError: the checkpoint keeps `float32` momentum and the run `int8`, or the other way round.
    """
    saved = saved_storage(reader)
    if saved is not None and saved != storage:
        raise ValueError(f"Checkpoint {path} keeps the centres' momentum as {saved}; this run stores it as "
                         f"{storage}. To resume, run with centres_momentum {saved!r} (--centres-momentum {saved}); "
                         f"to start over instead, pass --no-resume (the checkpoints are replaced).")
