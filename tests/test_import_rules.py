"""Architecture rule: layers and model builders import keras only, never TensorFlow.

The modules are read, not imported, so the check also covers code paths a test never runs.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "keras_sphereface"
BACKEND_AGNOSTIC = ("layers", "models", "utils")
FORBIDDEN = ("tensorflow", "tf_keras", "tensorflow_addons")


def _imported_modules(path: Path) -> list[tuple[int, str]]:
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.extend((node.lineno, alias.name) for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.append((node.lineno, node.module))
    return found


def _backend_agnostic_files() -> list[Path]:
    return sorted(p for sub in BACKEND_AGNOSTIC for p in (PACKAGE / sub).rglob("*.py"))


def test_rule_covers_some_files():
    assert len(_backend_agnostic_files()) >= 3


@pytest.mark.parametrize("path", _backend_agnostic_files(), ids=lambda p: str(p.relative_to(PACKAGE)))
def test_backend_agnostic_module_does_not_import_tensorflow(path):
    offenders = [
        f"line {line}: import {module}"
        for line, module in _imported_modules(path)
        if module.split(".")[0] in FORBIDDEN
    ]
    assert not offenders, f"{path.name} must use keras / keras.ops only: {offenders}"


def test_checker_detects_a_tensorflow_import(tmp_path):
    sample = tmp_path / "sample.py"
    sample.write_text("import os\nfrom tensorflow.keras import layers\n", encoding="utf-8")
    assert (2, "tensorflow.keras") in _imported_modules(sample)
