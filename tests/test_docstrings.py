"""Every public module, class, method and function of `keras_sphereface` has a docstring.

The package tree is listed with `pkgutil` (no import), so subpackages added later (training,
export, inference, ...) are checked without touching this file; one test per subpackage keeps
failures readable. A subpackage's public API is the `__all__` of its `__init__` and of each public
module (a module without `__all__`: the classes and functions it defines under public names);
for classes, also the public methods and properties defined in the class itself. An override
of a documented base-class method counts as documented (`inspect.getdoc` finds the base text,
as `help()` shows it); a class must have its own docstring.
"""

from __future__ import annotations

import importlib
import importlib.util
import inspect
import pkgutil
import sys
from pathlib import Path

import pytest

PACKAGE = "keras_sphereface"


def _package_dir() -> Path:
    spec = importlib.util.find_spec(PACKAGE)
    assert spec is not None and spec.submodule_search_locations, f"{PACKAGE} is not importable"
    return Path(next(iter(spec.submodule_search_locations)))


def _subpackages() -> list[str]:
    """Dotted names of the package and all its subpackages, found on disk without importing them."""
    found = [PACKAGE]
    pending = [(PACKAGE, _package_dir())]
    while pending:
        name, path = pending.pop()
        for info in pkgutil.iter_modules([str(path)]):
            if info.ispkg:
                found.append(f"{name}.{info.name}")
                pending.append((f"{name}.{info.name}", path / info.name))
    return sorted(found)


def _public_modules(package: str) -> list[str]:
    """The package itself and its direct public (not `_`-prefixed) plain modules."""
    path = _package_dir().joinpath(*package.split(".")[1:])
    return [package] + [
        f"{package}.{info.name}"
        for info in pkgutil.iter_modules([str(path)])
        if not info.ispkg and not info.name.startswith("_")
    ]


def _is_missing(doc) -> bool:
    return not isinstance(doc, str) or not doc.strip()


def _own_class_doc_missing(cls) -> bool:
    doc = cls.__dict__.get("__doc__")
    if _is_missing(doc):
        return True
    # dataclasses and NamedTuples write their signature when the class has no docstring.
    return doc.startswith(f"{cls.__name__}(") or doc == "An enumeration."


def _describe(obj) -> str:
    """`path:line` of the definition, relative to the folder holding the package when inside it."""
    try:
        path, line = Path(inspect.getsourcefile(obj)), inspect.getsourcelines(obj)[1]
    except (OSError, TypeError):
        return "source unknown"
    root = _package_dir().parent
    return f"{path.relative_to(root) if path.is_relative_to(root) else path}:{line}"


def _member_function(attr):
    """The function behind a class attribute (method, static/class method, property), else None."""
    if isinstance(attr, (staticmethod, classmethod)):
        attr = attr.__func__
    if isinstance(attr, property):
        attr = attr.fget
    if hasattr(attr, "func") and type(attr).__name__ == "cached_property":
        attr = attr.func
    return attr if inspect.isfunction(attr) else None


def _missing_in_class(cls) -> list[str]:
    missing = []
    if _own_class_doc_missing(cls):
        missing.append(f"class {cls.__module__}.{cls.__qualname__} ({_describe(cls)})")
    for name, attr in vars(cls).items():
        if name.startswith("_"):
            continue
        if inspect.isclass(attr):
            missing.extend(_missing_in_class(attr))
            continue
        function = _member_function(attr)
        if function is None:
            continue
        if _is_missing(inspect.getdoc(getattr(cls, name))):
            kind = "property" if isinstance(attr, property) else "method"
            missing.append(f"{kind} {cls.__module__}.{cls.__qualname__}.{name} ({_describe(function)})")
    return missing


def _api_objects(module) -> list:
    root = module.__name__.split(".")[0]
    names = getattr(module, "__all__", None)
    if names is None:
        names = [
            name
            for name, obj in vars(module).items()
            if not name.startswith("_")
            and (inspect.isclass(obj) or inspect.isfunction(obj))
            and getattr(obj, "__module__", None) == module.__name__
        ]
    objects = []
    for name in names:
        obj = getattr(module, name, None)
        if obj is None:
            continue  # an `__all__` entry that does not resolve is another test's business
        if not (inspect.isclass(obj) or inspect.isfunction(obj)):
            continue  # constants, modules, instances: nothing of their own to document here
        if str(getattr(obj, "__module__", "")).split(".")[0] != root:
            continue  # re-exported from a third-party library
        objects.append(obj)
    return objects


def missing_docstrings(module_names: list[str]) -> tuple[list[str], list[str]]:
    """`(missing, skipped)`: public objects of the modules without a docstring, and the modules
    whose import needs an optional dependency that is not installed."""
    missing, skipped, seen = [], [], set()
    for module_name in module_names:
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError as error:
            if error.name and error.name.split(".")[0] != module_name.split(".")[0]:
                skipped.append(f"{module_name} (needs {error.name})")
                continue
            raise
        if _is_missing(module.__doc__):
            missing.append(f"module {module_name} ({_describe(module)})")
        for obj in _api_objects(module):
            key = (obj.__module__, obj.__qualname__)
            if key in seen:
                continue
            seen.add(key)
            if inspect.isclass(obj):
                missing.extend(_missing_in_class(obj))
            elif _is_missing(obj.__doc__):
                missing.append(f"function {obj.__module__}.{obj.__qualname__} ({_describe(obj)})")
    return sorted(missing), skipped


def test_walk_finds_the_known_subpackages():
    packages = _subpackages()
    for name in ("layers", "models", "data", "evaluation", "utils"):
        assert f"{PACKAGE}.{name}" in packages


@pytest.mark.parametrize("package", _subpackages())
def test_public_api_has_docstrings(package):
    missing, skipped = missing_docstrings(_public_modules(package))
    if missing:
        pytest.fail(f"{len(missing)} public objects of {package} have no docstring:\n  " + "\n  ".join(missing),
                    pytrace=False)
    if skipped:
        pytest.skip(f"not importable without optional dependencies: {', '.join(skipped)}")


_SAMPLE_INIT = '''
"""Sample package."""
from docpkg_sample.heads import Head, helper

__all__ = ["SIZE", "Head", "helper"]
SIZE = 3
'''

_SAMPLE_HEADS = '''
"""Heads."""
EXTRA = "more"


class Base:
    """Base."""

    def build(self):
        """Builds."""


class Head(Base):
    """Head.""" + EXTRA

    def build(self):  # inherits Base.build's docstring
        return 1

    def call(self):
        return 2

    @property
    def size(self):
        return 3


def helper():
    """Helps."""


def other():
    pass
'''


def test_checker_flags_an_expression_docstring(tmp_path, monkeypatch):
    """`"..." + TEXT` is an expression, not a docstring: the checker must see `__doc__` as None."""
    package = tmp_path / "docpkg_sample"
    package.mkdir()
    (package / "__init__.py").write_text(_SAMPLE_INIT, encoding="utf-8")
    (package / "heads.py").write_text(_SAMPLE_HEADS, encoding="utf-8")
    monkeypatch.syspath_prepend(str(tmp_path))
    names = ["docpkg_sample", "docpkg_sample.heads"]
    try:
        missing, skipped = missing_docstrings(names)
    finally:
        for name in names:
            sys.modules.pop(name, None)
    assert skipped == []
    assert [entry.split(" (")[0] for entry in missing] == [
        "class docpkg_sample.heads.Head",
        "function docpkg_sample.heads.other",
        "method docpkg_sample.heads.Head.call",
        "property docpkg_sample.heads.Head.size",
    ]
