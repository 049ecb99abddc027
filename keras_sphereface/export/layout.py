"""TF Serving's folder layout, written atomically: `DIR/<name>/<version>/`, plus `DIR/models.config`.

A version folder is built in a temporary sibling (`DIR/<name>/.<version>.tmp-*`, which TF Serving
ignores: it only loads numeric folder names) and renamed into place when complete. The rename never
replaces an existing folder: a failed or refused export leaves no half-written version and never
touches the versions already there.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

from keras_sphereface.utils.atomic import atomic_write
from keras_sphereface.utils.disk import clear_write_errors

#: Where `models.config` tells the model server to look (the `docker run -v DIR:/models` convention).
CONTAINER_ROOT = "/models"
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")


def check_name(name: str) -> str:
    """Validates a model name for the export folder and the model server (letters, digits, `_.-`)."""
    if not isinstance(name, str) or not _NAME.match(name):
        raise ValueError(
            f"The export name must start with a letter or digit and hold only letters, digits, '_', '.' "
            f"and '-'. Received: name={name!r}"
        )
    return name


def versions(model_dir: str | os.PathLike) -> list[int]:
    """The numeric versions present in `DIR/<name>`, ascending (empty if none or no folder)."""
    path = Path(model_dir)
    if not path.is_dir():
        return []
    return sorted(int(p.name) for p in path.iterdir() if p.is_dir() and p.name.isdigit())


def next_version(model_dir: str | os.PathLike) -> int:
    """The version a new export gets: one more than the highest present, or 1."""
    present = versions(model_dir)
    return present[-1] + 1 if present else 1


def check_version(version: object) -> int:
    """Validates a version number (a positive integer, as TF Serving requires)."""
    if isinstance(version, bool) or not isinstance(version, int) or version < 1:
        raise ValueError(f"version must be a positive integer. Received: version={version!r}")
    return version


@contextlib.contextmanager
def new_version_dir(model_dir: str | os.PathLike, version: int) -> Iterator[Path]:
    """Yields an empty temporary folder that becomes `model_dir/<version>` when the block succeeds.

    `keras_sphereface.utils.atomic.atomic_path(directory=True)` replaces an existing target as a
    whole; an export must never do that, so the final step here is a plain `os.rename`, which fails
    rather than replace a (non-empty) folder another writer created meanwhile.

    Raises:
        FileExistsError: the version exists already (checked before writing and at the rename).
        WriteError: the disk is full or the folder read-only; names the version folder, and says
            that nothing was left in its place.
    """
    model_dir = Path(model_dir)
    target = model_dir / str(check_version(version))
    if target.exists():
        raise FileExistsError(
            f"Version {version} already exists at {target}; existing versions are never overwritten. "
            f"Choose another --version, or none to get the next one ({next_version(model_dir)}). "
            f"Received: version={version}"
        )
    hint = (f"No version {version} was left at {target} (nor a half-written one), and the versions already in "
            f"{model_dir} are unchanged.")
    with clear_write_errors(target, hint):
        model_dir.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{version}.tmp-", dir=model_dir))
        try:
            yield tmp
            if target.exists():
                raise FileExistsError(f"Version {version} appeared at {target} while exporting; nothing replaced.")
            os.rename(tmp, target)
        finally:
            if tmp.exists():
                shutil.rmtree(tmp, ignore_errors=True)


def servable_models(export_root: str | os.PathLike) -> list[str]:
    """Names under `export_root` with at least one SavedModel version (what `models.config` lists)."""
    root = Path(export_root)
    if not root.is_dir():
        return []
    return sorted(
        p.name
        for p in root.iterdir()
        if p.is_dir() and _NAME.match(p.name) and any((p / str(v) / "saved_model.pb").is_file() for v in versions(p))
    )


def models_config_text(names: list[str], root: str = CONTAINER_ROOT) -> str:
    """TF Serving's `--model_config_file` text (protobuf text format) serving the latest version of each name."""
    blocks = "".join(
        "  config {\n"
        f'    name: "{name}"\n'
        f'    base_path: "{root.rstrip("/")}/{name}"\n'
        '    model_platform: "tensorflow"\n'
        "  }\n"
        for name in names
    )
    return (
        "# TensorFlow Serving model config, written by `ksf export`. base_path is where the export folder is\n"
        f"# mounted in the container (docker run -v \"$PWD/<export dir>:{root}\"); for a local\n"
        "# tensorflow_model_server, replace it with the absolute path of the export folder.\n"
        "model_config_list {\n" + blocks + "}\n"
    )


def write_models_config(export_root: str | os.PathLike, root: str = CONTAINER_ROOT) -> Path:
    """(Re)writes `export_root/models.config` listing every servable model there, atomically."""
    path = Path(export_root) / "models.config"
    with atomic_write(path) as handle:
        handle.write(models_config_text(servable_models(export_root), root))
    return path
