"""Where shared data and weights are found: `$KSF_DATA_DIR` and `$KSF_WEIGHTS_DIR`."""

from __future__ import annotations

import os
from pathlib import Path


def _env_dir(variable: str) -> Path | None:
    value = os.environ.get(variable)
    return Path(value).expanduser() if value else None


def data_dir() -> Path | None:
    """The data root from `$KSF_DATA_DIR` (holding e.g. `lfw/`), or None when unset."""
    return _env_dir("KSF_DATA_DIR")


def weights_dir() -> Path | None:
    """The extra weights search directory from `$KSF_WEIGHTS_DIR`, or None when unset."""
    return _env_dir("KSF_WEIGHTS_DIR")
