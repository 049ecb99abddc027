"""The memory a margin head holds per replica, printed before step 1, and the refusal of a head that cannot fit.

The figures are float32 bytes, counted from the shapes (they are what the head allocates, not a
measurement): the class centres, the optimizer's slots, the gradient, and the `(batch, classes)`
logits with the tensors of their backward pass. `bench/partial_fc.py` measures the peak resident
memory the same configurations reach.
"""

from __future__ import annotations

import dataclasses
import inspect
import math
import os

from keras_sphereface.layers.partial_fc import sampled_count
from keras_sphereface.models.zoo import ModelSpec
from keras_sphereface.training.centre_momentum import momentum_bytes
from keras_sphereface.training.config import TrainConfig, head_updates_centres
from keras_sphereface.training.sharded_head import shard_bounds

FLOAT32_BYTES = 4
# The (batch, classes) tensors of a step: logits, softmax, their gradient, the margin's scatter copy.
_LOGIT_COPIES = 4


@dataclasses.dataclass(frozen=True)
class HeadMemory:
    """Bytes a margin head holds on one replica during a training step.

    Attributes:
        centres: the class centres (the head's kernel).
        optimizer_slots: SGD momentum of the centres.
        gradient: the centres' gradient (dense for the full head, with its temporaries; the sampled rows
            with Partial FC).
        logits: the `(batch, classes)` (or `(batch, sampled)`) tensors of forward and backward.
        layout: str. How the head runs, said after the figures (Partial FC's rate, the sharding).
    """

    centres: int
    optimizer_slots: int
    gradient: int
    logits: int
    layout: str = ""

    @property
    def total(self) -> int:
        """All four, in bytes."""
        return self.centres + self.optimizer_slots + self.gradient + self.logits

    def describe(self) -> str:
        """One line: `head per replica 6.10 GB (centres 4.10 GB, momentum 2.05 GB, gradient ..., logits ...)`."""
        return (f"head per replica {_gb(self.total)} (centres {_gb(self.centres)}, momentum "
                f"{_gb(self.optimizer_slots)}, gradient {_gb(self.gradient)}, logits {_gb(self.logits)})"
                f"{self.layout}")


def _gb(size: int) -> str:
    return f"{size / 1e9:.2f} GB"


def head_memory(classes: int, embedding_dim: int, global_batch: int, replicas: int = 1,
                sample_rate: float = 1.0, centres_momentum: str = "float32") -> HeadMemory:
    """The `HeadMemory` of a head of `classes` centres of `embedding_dim` floats on one of `replicas`.

    Args:
        classes: int. Number of classes.
        embedding_dim: int.
        global_batch: int. Images per step over all replicas.
        replicas: int. Replicas the centres are sharded over (1: every replica holds them all).
        sample_rate: float in (0, 1]. Partial FC's sample rate (1.0: the full head).
        centres_momentum: str. The momentum's storage: `"float32"`, or `"int8"` (a byte per value and a
            float32 scale per row).
    """
    local = math.ceil(classes / replicas)
    rows = local * embedding_dim * FLOAT32_BYTES
    slots = momentum_bytes(local, embedding_dim, centres_momentum)
    if sample_rate >= 1.0:
        # Beside the centres and momentum, the step's peak holds four (dim, classes) tensors: the
        # kernel's gradient from the matmul, the column norms', their sum, and a copy of the centres
        # (bench/partial_fc.py at 1M classes: 13.6 GB peak, the runtime's 0.8 included, against 13.3
        # counted here; sharded over 2 replicas: 14.7 against 2 x 6.6; docs/performance.md).
        return HeadMemory(centres=rows, optimizer_slots=slots, gradient=4 * rows,
                          logits=_LOGIT_COPIES * global_batch * local * FLOAT32_BYTES)
    sampled = sampled_count(local, sample_rate, global_batch)
    sampled_rows = sampled * embedding_dim * FLOAT32_BYTES
    # The gathered rows, their gradient and the new momentum rows.
    return HeadMemory(centres=rows, optimizer_slots=slots, gradient=3 * sampled_rows,
                      logits=_LOGIT_COPIES * global_batch * sampled * FLOAT32_BYTES)


def available_memory() -> int | None:
    """Bytes of host memory the process can still allocate (`MemAvailable` of `/proc/meminfo`), or None if unknown.

    This is the CPU device's memory; a GPU's own memory is not read (TensorFlow reports only what it
    has allocated there), so on a GPU the check is against host memory.
    """
    try:
        with open("/proc/meminfo", encoding="ascii") as handle:
            for line in handle:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return None


def check_head_fits(classes: int, embedding_dim: int, global_batch: int, replicas: int, sample_rate: float,
                    available: int | None, centres_momentum: str = "float32") -> HeadMemory:
    """The head's `HeadMemory`, or a `MemoryError` naming the sample rate (or replica count) that would fit.

    Args:
        classes, embedding_dim, global_batch, replicas, sample_rate, centres_momentum: see `head_memory`.
        available: int or None. Bytes the device can still give (None: no check).

    Raises:
        MemoryError: the head needs more than `available`.
    """
    memory = head_memory(classes, embedding_dim, global_batch, replicas, sample_rate, centres_momentum)
    if available is None or memory.total <= available:
        return memory
    fits = [rate for rate in (0.5, 0.3, 0.2, 0.1, 0.05)
            if rate < sample_rate and head_memory(classes, embedding_dim, global_batch, replicas, rate,
                                                  centres_momentum).total <= available]
    remedies = [f"--sample-rate {fits[0]}"] if fits else []
    more = next((n for n in (2, 4, 8, 16, 32, 64) if n > replicas and
                 head_memory(classes, embedding_dim, global_batch, n, sample_rate, centres_momentum).total
                 <= available), None)
    if more:
        remedies.append(f"the centres sharded over {more} replicas (--head-sharding sharded)")
    if centres_momentum == "float32" and head_updates_centres(sample_rate, replicas > 1) and head_memory(
            classes, embedding_dim, global_batch, replicas, sample_rate, "int8").total <= available:
        remedies.append("--centres-momentum int8")
    remedy = " or ".join(remedies) or "fewer classes or a smaller embedding_dim"
    raise MemoryError(
        f"The margin head does not fit: {classes:,} classes x {embedding_dim} at sample_rate={sample_rate} on "
        f"{replicas} replica(s) needs {memory.describe()}, and the device has {_gb(available)} available. "
        f"Use {remedy}.")


def check_run_head(config: TrainConfig, spec: ModelSpec, num_classes: int, num_replicas: int) -> HeadMemory:
    """The checks of a run's head before anything is built or written; returns its `HeadMemory` per replica.

    Raises:
        ValueError: Partial FC with the centres replicated on several replicas (each replica would
            sample and update its own copy), or a sharded head with fewer classes than replicas or
            its own `kernel_initializer`, or int8 momentum for a full replicated head (its momentum is
            the optimizer's).
        MemoryError: the head would not fit the memory available (`check_head_fits`).
    """
    sharded = config.shards_head(num_replicas)
    if config.sample_rate < 1 and num_replicas > 1 and not sharded:
        raise ValueError(f"sample_rate < 1 (Partial FC) on {num_replicas} replicas samples each shard of a sharded "
                         f"head: use head_sharding 'auto' or 'sharded' (--head-sharding), not 'replicated'. "
                         f"Received: sample_rate={config.sample_rate}, head_sharding={config.head_sharding!r}")
    if sharded:
        shard_bounds(num_classes, num_replicas)  # at least one class per replica
    if sharded and "kernel_initializer" in config.head_options:
        raise ValueError("A sharded head starts from the seeded centres (keras_sphereface.training.centre_init), "
                         "the same on any number of replicas: remove kernel_initializer from head_options. "
                         f"Received: kernel_initializer={config.head_options['kernel_initializer']!r}")
    if config.centres_momentum != "float32" and not head_updates_centres(config.sample_rate, sharded):
        raise ValueError(f"centres_momentum {config.centres_momentum!r} stores the momentum of centres the head "
                         f"updates itself (Partial FC, sample_rate < 1, or a sharded head); this run's full head is "
                         f"updated by the optimizer. Use centres_momentum 'float32' or a sample_rate below 1. "
                         f"Received: sample_rate={config.sample_rate}, head_sharding={config.head_sharding!r} on "
                         f"{num_replicas} replica(s)")
    embedding_dim = config.embedding_dim or inspect.signature(spec.builder).parameters["embedding_dim"].default
    memory = check_head_fits(num_classes, int(embedding_dim), config.batch_size, num_replicas if sharded else 1,
                             config.sample_rate, available_memory(), config.centres_momentum)
    layout = f"; Partial FC, sample_rate {config.sample_rate}" if config.sample_rate < 1 else ""
    if sharded:
        layout += f"; centres sharded over {num_replicas} replicas"
    elif num_replicas > 1:
        layout += f"; centres replicated on {num_replicas} replicas"
    if config.centres_momentum != "float32":
        layout += f"; {config.centres_momentum} momentum"
    return dataclasses.replace(memory, layout=layout)
