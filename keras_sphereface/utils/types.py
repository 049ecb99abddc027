"""Type aliases that the public entry points share."""

from __future__ import annotations

import os
from typing import Any

import keras

# What every entry point that runs a model accepts: a zoo name ("mobilefacenet"), a path (a `.keras` file, a
# `.weights.h5` file or an export folder of `ksf export`), or a built `keras.Model`.
ModelLike = str | os.PathLike | keras.Model

# A backend tensor (TensorFlow, JAX or PyTorch) or anything `keras.ops` accepts (NumPy arrays, Python numbers).
Tensor = Any
