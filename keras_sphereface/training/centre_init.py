"""The initial class centres of a run: a function of the seed and the class, however the centres are split.

Row `c` of the `(classes, embedding_dim)` centres is drawn from block `c // BLOCK_ROWS` of
stateless uniform draws seeded by `(seed, block)`, in `[-limit, limit]` with Glorot's
`limit = sqrt(6 / (classes + embedding_dim))` (the distribution of Keras' `glorot_uniform`, which
Caffe's SphereFace calls Xavier, on the whole kernel). A replica that holds classes `[start, stop)`
draws only the blocks it needs, so a head sharded over any number of replicas starts from the same
centres as the head on one device, and no process ever draws the whole matrix to keep a slice.
"""

from __future__ import annotations

import math

import keras
import tensorflow as tf

#: Rows per seeded block of draws (a block of 512-d rows is 8 MB).
BLOCK_ROWS = 4096


def glorot_limit(classes: int, embedding_dim: int) -> float:
    """`sqrt(6 / (classes + embedding_dim))`: the bound of the uniform initial centres."""
    return math.sqrt(6.0 / (classes + embedding_dim))


def centre_blocks(seed: int, classes: int, embedding_dim: int, start: int, stop: int):
    """Yields `(first_row, rows)` pieces covering the centres of classes `[start, stop)`, in order.

    Args:
        seed: int. The run's seed.
        classes: int. All classes of the head (sets the Glorot bound).
        embedding_dim: int.
        start, stop: int. The classes wanted, `0 <= start < stop <= classes`.

    Yields:
        `(row, values)`: int offset from `start`, float32 `(n, embedding_dim)` rows.
    """
    limit = glorot_limit(classes, embedding_dim)
    for block in range(start // BLOCK_ROWS, (stop - 1) // BLOCK_ROWS + 1):
        draw = tf.random.stateless_uniform((BLOCK_ROWS, embedding_dim), seed=[seed, block], minval=-limit,
                                           maxval=limit, dtype=tf.float32)
        first = block * BLOCK_ROWS
        low, high = max(start, first), min(stop, first + BLOCK_ROWS)
        yield low - start, draw[low - first:high - first]


def fill_centres(variable: tf.Variable, seed: int, classes: int, start: int) -> None:
    """Assigns the initial centres of classes `[start, start + rows)` to `variable` `(rows, dim)`, block by block.

    Row scatters write in place (a sliced assign would copy the whole variable per block).
    """
    rows, dim = (int(n) for n in variable.shape)
    for offset, values in centre_blocks(seed, classes, dim, start, start + rows):
        variable.scatter_update(tf.IndexedSlices(values, tf.range(offset, offset + int(values.shape[0]))))


class CentresInitializer(keras.initializers.Initializer):
    """The seeded initial centres as a Keras initializer, for a head that holds all of them.

    Args:
        seed: int. The run's seed.
        classes_first: bool. The kernel is `(classes, dim)` rows; else `(dim, classes)` columns
            (the same values, transposed).
    """

    def __init__(self, seed: int, classes_first: bool = False):
        self.seed, self.classes_first = int(seed), bool(classes_first)

    def __call__(self, shape, dtype=None):
        classes, dim = (shape[0], shape[1]) if self.classes_first else (shape[1], shape[0])
        pieces = [values for _, values in centre_blocks(self.seed, int(classes), int(dim), 0, int(classes))]
        rows = tf.concat(pieces, axis=0)
        return tf.cast(rows if self.classes_first else tf.transpose(rows), dtype or tf.float32)

    def get_config(self) -> dict:
        return {"seed": self.seed, "classes_first": self.classes_first}
