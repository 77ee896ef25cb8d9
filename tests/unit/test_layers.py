"""The layer rule, checked on the source: modeling imports nothing above it (but the error family); the library
never imports the app; no module of ordinalclip imports itself back through others."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from tests.helpers import REPO_ROOT

SRC = REPO_ROOT / "src" / "ordinalclip"
# Modules every layer may import: they import nothing of ordinalclip themselves.
LEAVES = ("ordinalclip.errors",)


def _is_type_checking(node: ast.AST) -> bool:
    test = node.test if isinstance(node, ast.If) else None
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _imported_modules(path: Path, runtime_only: bool = False) -> set[str]:
    """Every ``ordinalclip...`` module a file imports, at top level or inside functions; ``runtime_only``
    leaves out the imports under ``if TYPE_CHECKING:`` (for type checkers only: they never run)."""
    found: set[str] = set()
    todo: list[ast.AST] = [ast.parse(path.read_text(encoding="utf-8"))]
    while todo:
        node = todo.pop()
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
            found.update(f"{node.module}.{a.name}" for a in node.names)
        if runtime_only and _is_type_checking(node):
            todo.extend(getattr(node, "orelse", []))
            continue
        todo.extend(ast.iter_child_nodes(node))
    return {m for m in found if m.split(".")[0] == "ordinalclip"}


def _is_leaf(module: str) -> bool:
    return any(module == leaf or module.startswith(leaf + ".") for leaf in LEAVES)


def _files(under: str) -> list[Path]:
    return sorted((SRC / under).rglob("*.py")) if under else sorted(SRC.rglob("*.py"))


def test_the_checker_sees_imports_inside_functions(tmp_path: Path) -> None:
    probe = tmp_path / "probe.py"
    probe.write_text("def f():\n    from ordinalclip.app import cli\n    import ordinalclip.engine.run\n")
    assert _imported_modules(probe) == {"ordinalclip.app", "ordinalclip.app.cli", "ordinalclip.engine.run"}


@pytest.mark.parametrize("path", _files("modeling"), ids=lambda p: str(p.relative_to(SRC)))
def test_modeling_imports_only_modeling(path: Path) -> None:
    above = sorted(
        m
        for m in _imported_modules(path)
        if m != "ordinalclip"
        and not m.startswith("ordinalclip.modeling")
        and m != "ordinalclip.__version__"
        and not _is_leaf(m)
    )
    assert not above, f"{path.relative_to(SRC)} reaches above the modeling layer: {above}"


@pytest.mark.parametrize(
    "path",
    [p for p in _files("") if "app" not in p.relative_to(SRC).parts],
    ids=lambda p: str(p.relative_to(SRC)),
)
def test_the_library_never_imports_the_app(path: Path) -> None:
    app = sorted(
        m for m in _imported_modules(path) if m == "ordinalclip.app" or m.startswith("ordinalclip.app.")
    )
    assert not app, f"{path.relative_to(SRC)} imports the app layer: {app}"


@pytest.mark.parametrize("name", ["losses.py", "metrics.py"])
def test_losses_and_metrics_are_pure(name: str) -> None:
    found = {m for m in _imported_modules(SRC / name) if not _is_leaf(m)}
    assert found == set(), f"{name} must depend on nothing of ordinalclip but its leaves {LEAVES}: {found}"


@pytest.mark.parametrize("leaf", LEAVES)
def test_leaves_import_nothing_of_ordinalclip(leaf: str) -> None:
    path = SRC / (leaf.split(".", 1)[1].replace(".", "/") + ".py")
    assert _imported_modules(path) == set(), f"{leaf} is imported by every layer: it must import none"


def _module_name(path: Path, root: Path) -> str:
    parts = list(path.relative_to(root.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _import_graph(root: Path) -> dict[str, set[str]]:
    """module -> the modules of the package under ``root`` it imports (``from a import b`` counts as an arrow to
    ``a.b`` where that is a module, else to ``a``)."""
    names = {_module_name(p, root): p for p in sorted(root.rglob("*.py"))}
    graph: dict[str, set[str]] = {}
    for name, path in names.items():
        targets = set()
        for m in _imported_modules(path, runtime_only=True):
            while m and m not in names:  # "ordinalclip.app.sweep.run_sweep" -> "ordinalclip.app.sweep"
                m = m.rpartition(".")[0]
            if m and m != name:
                targets.add(m)
        graph[name] = targets
    return graph


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """One cycle through each strongly connected component with more than one module (Tarjan's algorithm)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def test_the_cycle_finder_finds_a_cycle_through_a_function_level_import(tmp_path: Path) -> None:
    pkg = tmp_path / "ordinalclip"
    (pkg / "app").mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    (pkg / "app" / "__init__.py").write_text("")
    (pkg / "app" / "a.py").write_text("from ordinalclip.app.b import g\n")
    (pkg / "app" / "b.py").write_text("def g():\n    from ordinalclip.app import a\n")
    (pkg / "app" / "c.py").write_text("import ordinalclip.app.a\n")
    (pkg / "app" / "d.py").write_text(
        "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from ordinalclip.app import e\n"
    )
    (pkg / "app" / "e.py").write_text("from ordinalclip.app import d\n")
    graph = _import_graph(pkg)
    assert graph["ordinalclip.app.c"] == {"ordinalclip.app.a"}
    assert graph["ordinalclip.app.d"] == set()  # a TYPE_CHECKING-only import never runs
    assert _cycles(graph) == [["ordinalclip.app.a", "ordinalclip.app.b"]]


def test_no_import_cycles() -> None:
    """No circle among the modules of ordinalclip, imports inside functions included (they run in the end).

    Each ``import`` or ``from ... import`` statement is an arrow to the module it names; the implicit import of
    a module's parent packages (``import a.b.c`` runs ``a/__init__`` and ``a/b/__init__``) is not drawn, so a
    package's ``__init__`` that re-exports its modules does not tie every importer of one of them to all the
    others. Imports under ``if TYPE_CHECKING:`` are left out: they never run (``ordinalclip/__init__`` names
    its lazy exports that way for type checkers; at run time it imports them on first use).
    """
    cycles = _cycles(_import_graph(SRC))
    assert not cycles, "import cycles: " + "; ".join(" <-> ".join(c) for c in cycles)
