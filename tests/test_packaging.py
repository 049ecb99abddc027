"""The package installs from a wheel into a fresh venv, and setup.cfg lists every package."""

from __future__ import annotations

import configparser
import os
import subprocess
import sys
import sysconfig
import venv
from pathlib import Path

import pytest

from keras_sphereface.version import __version__

REPO = Path(__file__).resolve().parents[1]


def _declared_packages() -> set[str]:
    config = configparser.ConfigParser()
    config.read(REPO / "setup.cfg")
    return {line.strip() for line in config["options"]["packages"].splitlines() if line.strip()}


def test_setup_cfg_lists_every_package():
    source = {
        ".".join(p.parent.relative_to(REPO).parts)
        for p in (REPO / "keras_sphereface").rglob("__init__.py")
    }
    declared = _declared_packages()
    assert source - declared == set(), "add these to [options] packages in setup.cfg"
    assert "ksf" in declared
    assert not (REPO / "cli" / "__init__.py").parent.joinpath("cli").exists()


def test_no_tensorflow_addons_anywhere():
    text = (REPO / "setup.cfg").read_text(encoding="utf-8")
    assert "tensorflow-addons" not in text and "tensorflow_addons" not in text


@pytest.mark.slow
def test_wheel_installs_into_fresh_venv(tmp_path):
    """Build the wheel, install it (no deps) into a new venv, run `ksf --version` and imports.

    The fresh venv has no network, so it borrows the dependencies (click, numpy, ...) of
    the running interpreter through a `.pth` entry. That directory's own `.pth` files are
    not executed, so the development (editable) install stays invisible to it.
    """
    dist = tmp_path / "dist"
    subprocess.run(
        [sys.executable, "-m", "build", "--wheel", "--no-isolation", "--outdir", str(dist), str(REPO)],
        check=True,
        capture_output=True,
    )
    (wheel,) = dist.glob("keras_sphereface-*.whl")
    env_dir = tmp_path / "venv"
    venv.create(env_dir, with_pip=True)  # ensurepip works offline
    python, ksf = env_dir / "bin" / "python", env_dir / "bin" / "ksf"
    subprocess.run(
        [str(python), "-m", "pip", "install", "--no-deps", "--no-index", "--quiet", str(wheel)],
        check=True, capture_output=True,
    )
    purelib = subprocess.run(
        [str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        check=True, capture_output=True, text=True,
    ).stdout.strip()
    Path(purelib, "borrowed_deps.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}

    out = subprocess.run([str(ksf), "--version"], check=True, capture_output=True, text=True,
                         env=env, cwd=tmp_path)
    assert __version__ in out.stdout
    check = (
        "import keras_sphereface, ksf, pathlib; "
        f"assert pathlib.Path(keras_sphereface.__file__).is_relative_to({purelib!r}); "
        "print(keras_sphereface.__version__)"
    )
    out = subprocess.run([str(python), "-c", check], check=True, capture_output=True,
                         text=True, env=env, cwd=tmp_path)
    assert out.stdout.strip() == __version__
