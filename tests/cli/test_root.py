"""The `ksf` root group: version, help and the registered commands."""

from __future__ import annotations

import subprocess
import sys

from click.testing import CliRunner

from keras_sphereface.version import __version__
from ksf.main import cli


def test_version_and_help_list_commands():
    runner = CliRunner()
    result = runner.invoke(cli, ["--version"])
    assert result.exit_code == 0 and __version__ in result.output
    result = runner.invoke(cli, ["--help"])
    assert result.exit_code == 0
    for command in ("demo", "align", "convert", "eval"):
        assert command in result.output


def test_python_dash_m_ksf():
    out = subprocess.run([sys.executable, "-m", "ksf", "--version"], capture_output=True, text=True, check=True)
    assert __version__ in out.stdout


def test_demo_rejects_missing_data_folder(tmp_path):
    result = CliRunner().invoke(cli, ["demo", "--data", str(tmp_path / "nope")])
    assert result.exit_code != 0 and "does not exist" in result.output
