"""The one report header of the benchmarks: hardware, versions, backend, threads.

Every bench script (`margin_heads.py`, `input_pipeline.py`, `alignment_conventions.py`,
`train_throughput.py`, `serving.py`, and any new one) prints its result with `emit(record)`:
one JSON line with the script's own figures followed by what `report_header()` returns, so
every figure quoted in `docs/` carries the machine, versions, backend and thread settings it
was measured with, written the same way. A script runs as `python bench/<name>.py`, which
puts `bench/` on `sys.path`, so it imports this module as `from _report import emit`.

`python bench/_report.py` prints the header alone (`make bench` runs every file here).
"""

from __future__ import annotations

import datetime
import importlib.metadata
import json
import os
import platform
import subprocess
import sys
from pathlib import Path

#: Environment variables that set thread pools, reported when set.
THREAD_VARIABLES = (
    "OMP_NUM_THREADS",
    "MKL_NUM_THREADS",
    "OPENBLAS_NUM_THREADS",
    "TF_NUM_INTRAOP_THREADS",
    "TF_NUM_INTEROP_THREADS",
    "XLA_FLAGS",
)
#: Frameworks whose version is reported when installed (distribution names to try, in order).
FRAMEWORKS = {"tensorflow": ("tensorflow", "tensorflow-cpu"), "jax": ("jax",), "torch": ("torch",)}
HEADER_KEYS = ("bench", "time_utc", "commit", "hardware", "versions", "backend", "dtype_policy", "threads")


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text(encoding="utf-8").splitlines():
            if line.startswith("model name"):
                return line.partition(":")[2].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _gpus(backend: str) -> list[str] | None:
    """Names of the GPUs the active Keras backend sees; None when that cannot be asked."""
    try:
        if backend == "tensorflow":
            import tensorflow as tf

            return [
                tf.config.experimental.get_device_details(device).get("device_name", device.name)
                for device in tf.config.list_physical_devices("GPU")
            ]
        if backend == "jax":
            import jax

            return [device.device_kind for device in jax.devices() if device.platform == "gpu"]
        if backend == "torch":
            import torch

            return [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())]
    except Exception as error:  # a broken driver must not stop a benchmark from reporting
        return [f"unknown ({type(error).__name__}: {error})"]
    return None


def _version(module_name: str, distributions: tuple[str, ...]) -> str | None:
    module = sys.modules.get(module_name)
    if module is not None and getattr(module, "__version__", None):
        return str(module.__version__)
    for distribution in distributions:
        try:
            return importlib.metadata.version(distribution)
        except importlib.metadata.PackageNotFoundError:
            continue
    return None


def _commit() -> str | None:
    """`git rev-parse --short HEAD` of the checkout holding bench/, `+dirty` with local changes."""
    root = Path(__file__).resolve().parents[1]
    try:
        head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=root, capture_output=True,
                              text=True, timeout=10, check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=root,
                               capture_output=True, text=True, timeout=10, check=True).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None
    return head + ("+dirty" if dirty else "")


def _threads() -> dict:
    threads: dict = {"environment": {name: os.environ[name] for name in THREAD_VARIABLES if name in os.environ}}
    if "tensorflow" in sys.modules:
        tf = sys.modules["tensorflow"]
        # 0 is TensorFlow's own choice (about one thread per usable core).
        threads["tensorflow_intra_op"] = tf.config.threading.get_intra_op_parallelism_threads() or "default"
        threads["tensorflow_inter_op"] = tf.config.threading.get_inter_op_parallelism_threads() or "default"
    if "torch" in sys.modules:
        threads["torch"] = sys.modules["torch"].get_num_threads()
    return threads


def report_header() -> dict:
    """What every benchmark line reports besides its figures.

    Returns:
        dict with `bench` (the script's name), `time_utc`, `commit` (short hash, `+dirty` with
        local changes; None outside git), `hardware` (`cpu` model, `cpu_count`, `usable_cpus`,
        `machine`, `gpus`: names, `[]` for none, None when the backend cannot say;
        `load_average_1min`), `versions` (python, numpy, keras, keras_sphereface and each of
        tensorflow / jax / torch that is installed), `backend` (Keras backend), `dtype_policy`
        (Keras global policy) and `threads` (thread-pool environment variables that are set,
        and the pools of TensorFlow / PyTorch when imported).
    """
    import keras
    import numpy as np

    import keras_sphereface

    backend = keras.backend.backend()
    cpu_count = os.cpu_count()
    usable = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else cpu_count
    versions = {
        "python": platform.python_version(),
        "numpy": np.__version__,
        "keras": keras.__version__,
        "keras_sphereface": keras_sphereface.__version__,
    }
    for module_name, distributions in FRAMEWORKS.items():
        version = _version(module_name, distributions)
        if version is not None:
            versions[module_name] = version
    script = Path(sys.argv[0]).stem if sys.argv and sys.argv[0].endswith(".py") else None
    return {
        "bench": script,
        "time_utc": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "commit": _commit(),
        "hardware": {
            "cpu": _cpu_model(),
            "cpu_count": cpu_count,
            "usable_cpus": usable,
            "machine": platform.machine(),
            "gpus": _gpus(backend),
            "load_average_1min": round(os.getloadavg()[0], 2) if hasattr(os, "getloadavg") else None,
        },
        "versions": versions,
        "backend": backend,
        "dtype_policy": keras.config.dtype_policy().name,
        "threads": _threads(),
    }


def emit(record: dict) -> dict:
    """Prints `record` and the header (`report_header()`, taken now) as one JSON line.

    Args:
        record: dict. The benchmark's own figures; its keys must not be header keys
            (`HEADER_KEYS`).

    Returns:
        The dict that was printed.
    """
    clash = sorted(set(record) & set(HEADER_KEYS))
    if clash:
        raise ValueError(f"`record` keys clash with the report header: {clash}. Received: record keys={list(record)}")
    header = report_header()
    line = {"bench": header.pop("bench"), **record, **header}
    print(json.dumps(line), flush=True)
    return line


if __name__ == "__main__":
    emit({})
