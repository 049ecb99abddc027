"""Layer tests run under every backend `make test` uses (TensorFlow, then JAX)."""

from __future__ import annotations

import contextlib

import keras
import pytest


@pytest.fixture(autouse=True)
def float64_numerics():
    """Let float64 reference comparisons stay float64 under JAX (x64 is off by default there).

    The layers cast to float32 themselves; this only affects the pure functions the tests
    feed with float64 arrays, so tolerances can stay tight on every backend.
    """
    if keras.backend.backend() == "jax":
        import jax

        with jax.enable_x64(True):
            yield
    else:
        with contextlib.nullcontext():
            yield
