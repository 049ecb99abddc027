"""TOML recipes: named files of `TrainConfig` fields that override a base config, read and written.

A recipe is a small TOML file named `<data>_<backbone>_<loss>.toml` whose keys are `TrainConfig`
fields. It may name the recipe it overrides with `base = "<name or file>"`; every chain ends at
`base.toml` (the dataclass defaults written out). The shipped recipes live in
`keras_sphereface/training/recipes/`; `RECIPE_NAMES` lists them.

    >>> config = load_recipe("lfw-devtrain_sphere4_asoftmax", tfrecords="out/lfw/train-*.tfrecord")
    >>> config.model, config.head, config.lr
    ('sphere4', 'a-softmax', 0.01)

A run writes its resolved config as `config.toml` in its output folder (`config_to_toml`), so
`load_recipe("out/run/config.toml")` reproduces it.
"""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path

import tomllib

from keras_sphereface.training.config import TrainConfig

RECIPE_DIR = Path(__file__).resolve().parent / "recipes"


def _recipe_names() -> tuple[str, ...]:
    return tuple(sorted(p.stem for p in RECIPE_DIR.glob("*.toml") if p.stem != "base"))


#: Names of the shipped recipes (`keras_sphereface/training/recipes/*.toml`, without `base`).
RECIPE_NAMES: tuple[str, ...] = _recipe_names()


def recipe_path(name_or_file: str | os.PathLike) -> Path:
    """The file of a recipe: a shipped name (`"casia_sphere20_asoftmax"`) or a `.toml` path.

    Raises:
        ValueError: neither a shipped recipe nor an existing file; the message lists the names.
    """
    text = os.fspath(name_or_file)
    shipped = RECIPE_DIR / f"{text}.toml"
    if "/" not in text and os.sep not in text and shipped.is_file():
        return shipped
    path = Path(text)
    if path.is_file():
        return path
    raise ValueError(f"Unknown recipe; use a file or one of {list(RECIPE_NAMES)}. Received: recipe={text!r}")


def _read_chain(path: Path, seen: tuple[Path, ...] = ()) -> dict:
    if path.resolve() in seen:
        raise ValueError(f"Recipe bases form a cycle: {[str(p) for p in (*seen, path)]}")
    with open(path, "rb") as handle:
        try:
            values = tomllib.load(handle)
        except tomllib.TOMLDecodeError as error:
            raise ValueError(f"Recipe {path} is not valid TOML: {error}") from error
    base = values.pop("base", None if path.name == "base.toml" and path.parent == RECIPE_DIR else "base")
    if base is None:
        return values
    base_path = recipe_path(base) if not (path.parent / base).is_file() else path.parent / base
    merged = _read_chain(base_path, (*seen, path.resolve()))
    # The run's length is one choice: a recipe that states `steps` replaces its base's `epochs`, and back.
    for length, other in (("steps", "epochs"), ("epochs", "steps")):
        if length in values and other not in values:
            merged.pop(other, None)
    merged.update(values)
    return merged


def load_recipe(name_or_file: str | os.PathLike | None = None, **overrides) -> TrainConfig:
    """Reads a recipe (with its chain of bases) into a `TrainConfig`, then applies `overrides`.

    Args:
        name_or_file: str, path-like or None. A shipped recipe name, a `.toml` file (e.g. a
            run's `config.toml`), or None for the base config alone.
        **overrides: `TrainConfig` fields; None values mean "not given" and are ignored.

    Returns:
        The `TrainConfig`.

    Raises:
        ValueError: an unknown recipe, a key that is not a `TrainConfig` field, or a bad value.
    """
    path = RECIPE_DIR / "base.toml" if name_or_file is None else recipe_path(name_or_file)
    values = _read_chain(path)
    fields = {f.name for f in dataclasses.fields(TrainConfig)}
    unknown = sorted(set(values) - fields)
    if unknown:
        raise ValueError(f"Recipe {path.name} has unknown key(s) {unknown}; known: {sorted(fields)}")
    return TrainConfig(**values).replace(**overrides)


def _toml_value(value) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, str):
        escaped = value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
        return f'"{escaped}"'
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{k} = {_toml_value(v)}" for k, v in value.items()) + "}"
    raise TypeError(f"Cannot write {value!r} as TOML")


def config_to_toml(config: TrainConfig, header: str = "") -> str:
    """The resolved config as TOML text (fields set to None are left out: they read back as None).

    Args:
        config: TrainConfig.
        header: str. Comment lines written first (without the leading `#`).
    """
    lines = [f"# {line}" for line in header.splitlines()]
    lines.append('base = "base"')
    for key, value in dataclasses.asdict(config).items():
        if value is not None:
            lines.append(f"{key} = {_toml_value(value)}")
    return "\n".join(lines) + "\n"
