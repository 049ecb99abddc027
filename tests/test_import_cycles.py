"""Architecture rule: the modules of `keras_sphereface` import each other without a circle.

The modules are read (`ast`), not imported, and every import counts: top-level ones, lazy ones
inside functions, relative ones, `importlib.import_module("keras_sphereface....")`, and string
constants that name a module of the package (tables of lazy imports). A lazy import hides a
circle from Python at import time but not from a reader: the floors of the package only stay
floors while no module reaches back up.

Edges of the module graph (a package stands for its `__init__`):
- `import keras_sphereface.a.b` -> `keras_sphereface.a.b`;
- `from keras_sphereface.a import b` -> `keras_sphereface.a.b` when `b` is a module, else ->
  `keras_sphereface.a` (its `__init__`, where the name `b` comes from);
- the parent packages Python runs on the way are not edges: otherwise every package whose
  `__init__` re-exports from its submodules would be a circle with each of them.
Every strongly connected component of more than one module is reported with the edges (file
and line) that form it. Names built at run time (f-strings) are not seen.
"""

from __future__ import annotations

import ast
import dataclasses
import importlib.util
from pathlib import Path

import pytest

PACKAGE_DIR = Path(__file__).resolve().parents[1] / "keras_sphereface"
IMPORT_FUNCTIONS = ("import_module", "__import__")


@dataclasses.dataclass(frozen=True)
class Edge:
    """`source` imports `target` at `path:line` (`how`: the statement, shortened).

    `dangling`: the statement names a module of the package that does not exist (`target` is
    then the name as written); such edges are reported apart and left out of the graph.
    """

    source: str
    target: str
    path: Path
    line: int
    how: str
    dangling: bool = False


def module_files(package_dir: Path) -> dict[str, Path]:
    """Dotted module name -> file for every `.py` under `package_dir` (a package is its `__init__`)."""
    modules = {}
    for path in sorted(package_dir.rglob("*.py")):
        parts = path.relative_to(package_dir.parent).with_suffix("").parts
        if parts[-1] == "__init__":
            parts = parts[:-1]
        modules[".".join(parts)] = path
    return modules


def _is_package(path: Path) -> bool:
    return path.name == "__init__.py"


def _absolute(module: str, path: Path, relative: str | None, level: int) -> str:
    """The absolute name of `from <level dots><relative> import ...` written in `module`."""
    if level == 0:
        return relative or ""
    package = module if _is_package(path) else module.rpartition(".")[0]
    return importlib.util.resolve_name("." * level + (relative or ""), package)


def _import_call_target(node: ast.Call, module: str, path: Path) -> str | None:
    """The module named by `importlib.import_module("...")` / `__import__("...")` with a literal."""
    func = node.func
    name = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", None)
    if name not in IMPORT_FUNCTIONS or not node.args:
        return None
    first = node.args[0]
    if not (isinstance(first, ast.Constant) and isinstance(first.value, str)):
        return None
    if not first.value.startswith("."):
        return first.value
    # A relative name with `package=__package__` / `__name__` / a literal.
    anchor = node.args[1] if len(node.args) > 1 else next(
        (kw.value for kw in node.keywords if kw.arg == "package"), None)
    if isinstance(anchor, ast.Name) and anchor.id == "__name__":
        package = module
    elif isinstance(anchor, ast.Name) and anchor.id == "__package__":
        package = module if _is_package(path) else module.rpartition(".")[0]
    elif isinstance(anchor, ast.Constant) and isinstance(anchor.value, str):
        package = anchor.value
    else:
        return None
    try:
        return importlib.util.resolve_name(first.value, package)
    except ImportError:
        return None


def _docstring_nodes(tree: ast.AST) -> set[int]:
    """`id()` of the string constants that are docstrings (they name modules without importing)."""
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)) and node.body:
            first = node.body[0]
            if isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant):
                found.add(id(first.value))
    return found


def module_imports(module: str, path: Path, modules: dict[str, Path]) -> list[Edge]:
    """Every import of another module of the package written in `path`, lazy ones included."""
    root = next(iter(modules)).split(".")[0]
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    docstrings = _docstring_nodes(tree)
    lines = path.read_text(encoding="utf-8").splitlines()
    # (line, absolute name): each name must be a module (`from X import name` gives X, or X.name
    # when that is a module).
    found: set[tuple[int, str]] = set()
    call_arguments = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update((node.lineno, alias.name) for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = _absolute(module, path, node.module, node.level)
            for alias in node.names:
                candidate = f"{base}.{alias.name}"
                found.add((node.lineno, candidate if alias.name != "*" and candidate in modules else base))
        elif isinstance(node, ast.Call):
            target = _import_call_target(node, module, path)
            if target is not None:
                found.add((node.lineno, target))
                call_arguments.add(id(node.args[0]))
    for node in ast.walk(tree):
        if (isinstance(node, ast.Constant) and isinstance(node.value, str) and node.value in modules
                and "." in node.value and id(node) not in docstrings and id(node) not in call_arguments):
            found.add((node.lineno, node.value))  # a table of lazy imports
    edges = []
    for line, name in sorted(found):
        if (name != root and not name.startswith(root + ".")) or name == module:
            continue
        edges.append(Edge(module, name, path, line, lines[line - 1].strip()[:100], dangling=name not in modules))
    return edges


def all_imports(package_dir: Path) -> list[Edge]:
    """Every import of a module of the package in `package_dir`, dangling ones included."""
    modules = module_files(package_dir)
    return [edge for name, path in modules.items() for edge in module_imports(name, path, modules)]


def import_graph(package_dir: Path) -> list[Edge]:
    """The import edges between existing modules of the package in `package_dir`."""
    return [edge for edge in all_imports(package_dir) if not edge.dangling]


def strongly_connected_components(nodes: list[str], edges: list[Edge]) -> list[list[str]]:
    """Tarjan's algorithm, iterative; components in a stable order, each sorted."""
    successors: dict[str, list[str]] = {node: [] for node in nodes}
    for edge in edges:
        successors.setdefault(edge.source, []).append(edge.target)
        successors.setdefault(edge.target, [])
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    components = []
    for start in sorted(successors):
        if start in index:
            continue
        work = [(start, iter(sorted(set(successors[start]))))]
        index[start] = low[start] = len(index)
        stack.append(start)
        on_stack.add(start)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = len(index)
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(set(successors[child])))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                parent = work[-1][0]
                low[parent] = min(low[parent], low[node])
            if low[node] == index[node]:
                component = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == node:
                        break
                components.append(sorted(component))
    return sorted(components)


def import_cycles(package_dir: Path) -> list[tuple[list[str], list[Edge]]]:
    """Each circle (component of more than one module) with the edges inside it."""
    edges = import_graph(package_dir)
    modules = sorted(module_files(package_dir))
    cycles = []
    for component in strongly_connected_components(modules, edges):
        if len(component) > 1:
            members = set(component)
            cycles.append((component, [e for e in edges if e.source in members and e.target in members]))
    return cycles


def describe_cycles(cycles, relative_to: Path) -> str:
    """The report a failing test prints: modules, then one line per edge with its file and line."""
    text = []
    for component, edges in cycles:
        text.append("circle: " + ", ".join(component))
        text.extend(
            f"  {edge.source} -> {edge.target}   {edge.path.relative_to(relative_to)}:{edge.line}: {edge.how}"
            for edge in edges
        )
    return "\n".join(text)


def test_graph_covers_the_package():
    edges = import_graph(PACKAGE_DIR)
    assert len(module_files(PACKAGE_DIR)) >= 10
    assert any(e.source == "keras_sphereface.layers" and e.target == "keras_sphereface.layers.base" for e in edges)


def test_package_has_no_import_cycles():
    cycles = import_cycles(PACKAGE_DIR)
    if cycles:
        pytest.fail(f"{len(cycles)} import circle(s) in keras_sphereface (lazy imports count):\n"
                    + describe_cycles(cycles, PACKAGE_DIR.parent), pytrace=False)


def test_every_import_names_an_existing_module():
    dangling = [edge for edge in all_imports(PACKAGE_DIR) if edge.dangling]
    if dangling:
        pytest.fail("imports of modules that do not exist:\n" + "\n".join(
            f"  {edge.path.relative_to(PACKAGE_DIR.parent)}:{edge.line}: {edge.how}" for edge in dangling),
            pytrace=False)


_PLANTED = {
    # The `__init__` re-exports: pkg -> pkg.a, pkg -> pkg.c. Not a circle by itself.
    "__init__.py": "from pkg.a import A\nfrom pkg.c import load\n",
    # `b` is a module: a -> pkg.b, not a -> pkg.
    "a.py": "from pkg import b\n\n\nclass A:\n    pass\n",
    # A lazy relative import closes the circle a -> b -> a.
    "b.py": "def make():\n    from .a import A\n\n    return A()\n",
    # A string literal: c -> d.
    "c.py": 'import importlib\n\n\ndef load():\n    return importlib.import_module("pkg.d")\n',
    # `A` is not a module: d -> pkg (the `__init__`), closing pkg -> c -> d -> pkg.
    "d.py": "from pkg import A\n\n\ndef later():\n    from pkg.gone import thing\n",
    # Imports only modules of `pkg`: in no circle.
    "e.py": "from pkg import a, b\nimport pkg.c\n",
    # A subpackage with level-2 relative imports and a table of lazy imports: sub -> e, sub -> a.
    "sub/__init__.py": '"""pkg.d in a docstring is no import."""\nfrom .. import e\n_LAZY = {"A": "pkg.a"}\n',
}


def _plant(tmp_path: Path) -> Path:
    root = tmp_path / "pkg"
    for name, text in _PLANTED.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(text, encoding="utf-8")
    return root


def test_checker_reads_every_kind_of_import(tmp_path):
    edges = {(e.source, e.target, e.line) for e in import_graph(_plant(tmp_path))}
    assert edges == {
        ("pkg", "pkg.a", 1), ("pkg", "pkg.c", 2),
        ("pkg.a", "pkg.b", 1),
        ("pkg.b", "pkg.a", 2),
        ("pkg.c", "pkg.d", 5),
        ("pkg.d", "pkg", 1),
        ("pkg.e", "pkg.a", 1), ("pkg.e", "pkg.b", 1), ("pkg.e", "pkg.c", 2),
        ("pkg.sub", "pkg.e", 2), ("pkg.sub", "pkg.a", 3),
    }


def test_checker_reports_dangling_imports(tmp_path):
    dangling = [(e.source, e.target, e.line) for e in all_imports(_plant(tmp_path)) if e.dangling]
    assert dangling == [("pkg.d", "pkg.gone", 5)]


def test_checker_finds_planted_cycles(tmp_path):
    root = _plant(tmp_path)
    cycles = import_cycles(root)
    assert [component for component, _ in cycles] == [["pkg", "pkg.c", "pkg.d"], ["pkg.a", "pkg.b"]]
    report = describe_cycles(cycles, tmp_path)
    assert "pkg.b -> pkg.a   pkg/b.py:2: from .a import A" in report
    assert 'pkg.c -> pkg.d   pkg/c.py:5: return importlib.import_module("pkg.d")' in report
    assert "pkg.e" not in report and "pkg.sub" not in report


def test_tarjan_on_a_small_graph():
    def edge(source, target):
        return Edge(source, target, Path("x.py"), 1, "")

    edges = [edge("a", "b"), edge("b", "c"), edge("c", "a"), edge("c", "d"), edge("d", "e"), edge("e", "d")]
    assert strongly_connected_components(["a", "f"], edges) == [["a", "b", "c"], ["d", "e"], ["f"]]
