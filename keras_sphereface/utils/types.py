"""Type aliases that the public entry points share."""

from __future__ import annotations

import os
from typing import Union

import keras

# What every entry point that runs a model accepts: a zoo name ("mobilefacenet"), a path (a `.keras` file, a
# `.weights.h5` file or an export folder of `ksf export`), or a built `keras.Model`.
ModelLike = Union[str, os.PathLike, keras.Model]  # noqa: UP007 (a runtime alias: `|` cannot join a string type)
