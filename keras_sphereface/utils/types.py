"""Type aliases that the public entry points share."""

from __future__ import annotations

import os

import keras

# What every entry point that runs a model accepts: a zoo name ("mobilefacenet"), a path (a `.keras` file, a
# `.weights.h5` file or an export folder of `ksf export`), or a built `keras.Model`.
ModelLike = str | os.PathLike | keras.Model
