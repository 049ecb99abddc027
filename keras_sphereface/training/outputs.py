"""The files a run leaves in its folder besides checkpoints and logs: `config.toml`, the final model, its tag."""

from __future__ import annotations

import contextlib
import random
from pathlib import Path

import keras

from keras_sphereface.models.zoo import ModelSpec
from keras_sphereface.training.config import TrainConfig
from keras_sphereface.training.inputs import input_size
from keras_sphereface.training.recipe_files import config_to_toml
from keras_sphereface.utils.atomic import atomic_path, atomic_write
from keras_sphereface.utils.disk import WriteError
from keras_sphereface.version import __version__

CONFIG_TOML = "config.toml"
FINAL_KERAS = "final.keras"
FINAL_WEIGHTS = "final.weights.h5"


def resolve_seed(config: TrainConfig, out: Path) -> int:
    """The run's seed: `config.seed`, else the one a resumed run's `config.toml` recorded, else a fresh one."""
    if config.seed is not None:
        return int(config.seed)
    previous = out / CONFIG_TOML
    if config.resume and previous.is_file():
        import tomllib

        seed = tomllib.loads(previous.read_text(encoding="utf-8")).get("seed")
        if seed is not None:
            return int(seed)
    return random.SystemRandom().randrange(2**31)


def write_config(config: TrainConfig, out: Path) -> None:
    """Writes the resolved config as `<out>/config.toml`, with the command that reproduces the run."""
    out.mkdir(parents=True, exist_ok=True)
    header = (f"Resolved training config written by keras_sphereface {__version__}.\n"
              f"Reproduce: ksf train --tfrecords '{config.tfrecords}' --recipe {out / CONFIG_TOML} --out {out}")
    with atomic_write(out / CONFIG_TOML) as handle:
        handle.write(config_to_toml(config, header))


def save_final_model(model: keras.Model, out: Path, step: int, checkpoint: str | None) -> tuple[Path, Path]:
    """Writes `final.keras` and `final.weights.h5` atomically (temporaries of a killed earlier write removed).

    Returns:
        The two paths.

    Raises:
        keras_sphereface.utils.disk.WriteError: the disk is full or the folder read-only; says that the
            checkpoint of `step` is kept and the same command writes the final model from it.
    """
    for name in (FINAL_KERAS, FINAL_WEIGHTS):  # temporaries of a run killed while writing them
        for leftover in out.glob(f".{name}.tmp-*"):
            with contextlib.suppress(OSError):
                leftover.unlink()
    try:
        with atomic_path(out / FINAL_KERAS) as tmp:
            model.save(tmp)
        with atomic_path(out / FINAL_WEIGHTS) as tmp:
            model.save_weights(tmp)
    except WriteError as error:
        raise error.with_hint(f"The checkpoint of step {step} is kept ({checkpoint}); free space (or make "
                              f"the folder writable) and run the same command again to write the final "
                              f"model from it.") from error
    return out / FINAL_KERAS, out / FINAL_WEIGHTS


def register_run(config: TrainConfig, spec: ModelSpec, out: Path, val_accuracy: float | None) -> Path:
    """Registers `<out>/final.weights.h5` as `config.tag`, so `MODEL(weights=tag)` loads it in any process."""
    from keras_sphereface.models import register_weights

    return register_weights(
        spec.name, config.tag, out / FINAL_WEIGHTS,
        input_size=input_size(config, spec), embedding_dim=config.embedding_dim,
        description=config.description or f"{spec.builder_name} trained with {config.head} by ksf train",
        training_data=config.tfrecords, loss=f"{config.head} {config.head_options}",
        lfw_accuracy=val_accuracy, command=f"ksf train --recipe {out / CONFIG_TOML}",
    )
