"""The layer rule, checked on the source: modeling imports nothing above it (but the error family); the library
never imports the app; no module of ordinalclip imports itself back through others."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from tests.helpers import REPO_ROOT

SRC = REPO_ROOT / "src" / "ordinalclip"
# Modules every layer may import: they import nothing of ordinalclip themselves (lazy: the PEP 562 helper of the
# packages' __init__).
LEAVES = ("ordinalclip.errors", "ordinalclip.lazy")


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


@pytest.mark.parametrize("name", ["losses.py", "metrics.py", "penalties.py"])
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


# ------------------------------------------------------------------------------------ the deploy layers

TRAINING_STACK = ("torch", "torchvision", "lightning", "open_clip", "timm", "transformers")
# what the torch-free runtime may import of the package (each of them torch-free at import time)
RUNTIME_ALLOWED = (
    "ordinalclip.runtime",
    "ordinalclip.errors",
    "ordinalclip.config.typed",
    "ordinalclip.fileio",
    "ordinalclip.lazy",
    "ordinalclip.modeling.config",
    "ordinalclip.data.samples",
)
# inside functions only, for torch inputs and models that are not ONNX exports
RUNTIME_TORCH_FALLBACK = "ordinalclip.exports.torch_backend"


def _imports(path: Path, *, in_functions: bool = True) -> set[str]:
    """Every absolute module a file imports (any package), skipping ``if TYPE_CHECKING:`` blocks; with
    ``in_functions=False`` only the module-level ones."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    found: set[str] = set()

    def visit(node: ast.AST, top: bool) -> None:
        if _is_type_checking(node):
            for child in node.orelse:
                visit(child, top)
            return
        if isinstance(node, ast.Import) and (top or in_functions):
            found.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0 and (top or in_functions):
            found.add(node.module)
            found.update(f"{node.module}.{a.name}" for a in node.names)
        inner = top and not isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda))
        for child in ast.iter_child_nodes(node):
            visit(child, inner)

    visit(tree, True)
    return found


def _file_of(module: str) -> Path | None:
    parts = module.split(".")[1:]
    for n in range(len(parts), -1, -1):
        base = SRC.joinpath(*parts[:n])
        if base.with_suffix(".py").is_file():
            return base.with_suffix(".py")
        if (base / "__init__.py").is_file():
            return base / "__init__.py"
    return None


def _reaches(start: Path, *, in_functions: bool) -> set[str]:
    """Every ``ordinalclip`` module reachable from ``start`` through imports (module-level ones only, or also
    those inside functions), and the third-party top-level packages those files import at module level."""
    seen: set[Path] = set()
    reached: set[str] = set()
    todo = [start]
    while todo:
        path = todo.pop()
        if path in seen:
            continue
        seen.add(path)
        reached.update(
            m.split(".")[0] for m in _imports(path, in_functions=False) if not m.startswith("ordinalclip")
        )
        for module in _imports(path, in_functions=in_functions):
            if module.split(".")[0] == "ordinalclip" and (target := _file_of(module)) is not None:
                reached.add(module)
                todo.append(target)
    return reached


def test_the_import_walker_skips_type_checking_and_sees_functions(tmp_path: Path) -> None:
    probe = tmp_path / "probe.py"
    probe.write_text(
        "from typing import TYPE_CHECKING\nimport numpy\nif TYPE_CHECKING:\n    import torch\n"
        "def f():\n    import lightning\n"
    )
    assert _imports(probe) == {"typing", "typing.TYPE_CHECKING", "numpy", "lightning"}
    assert _imports(probe, in_functions=False) == {"typing", "typing.TYPE_CHECKING", "numpy"}


@pytest.mark.parametrize("path", _files("runtime"), ids=lambda p: str(p.relative_to(SRC)))
def test_the_runtime_imports_no_training_stack(path: Path) -> None:
    """A runtime module imports only the runtime's allowed modules, and nothing it reaches at import time
    imports torch, Lightning or a tower library; the one way out is the torch fallback, inside functions."""
    direct = {m for m in _imports(path) if m.split(".")[0] == "ordinalclip" and m != "ordinalclip"}
    top = {m for m in _imports(path, in_functions=False) if m.split(".")[0] == "ordinalclip"}
    outside = sorted(
        m
        for m in direct
        if not m.startswith(RUNTIME_ALLOWED)
        and m != "ordinalclip.__version__"
        and not (m.startswith(RUNTIME_TORCH_FALLBACK) and m not in top)
    )
    assert not outside, f"{path.relative_to(SRC)} reaches outside the runtime: {outside}"
    heavy = sorted(set(TRAINING_STACK) & _reaches(path, in_functions=False))
    assert not heavy, f"{path.relative_to(SRC)} imports the training stack at import time: {heavy}"
    stack = sorted(m for m in _imports(path) if m.split(".")[0] in TRAINING_STACK)
    assert not stack, f"{path.relative_to(SRC)} imports {stack} (the runtime runs without them)"


DEPLOY = [
    "predict.py",
    "checkpoint.py",
    "run_settings.py",
    "app/serve.py",
    *[str(p.relative_to(SRC)) for p in _files("exports")],
    *[str(p.relative_to(SRC)) for p in _files("runtime")],
]


@pytest.mark.parametrize("name", DEPLOY)
def test_predict_export_and_serve_never_reach_the_engine(name: str) -> None:
    reached = _reaches(SRC / name, in_functions=True)
    engine = sorted(m for m in reached if m.startswith(("ordinalclip.engine", "ordinalclip.api")))
    assert not engine, f"{name} reaches the training engine: {engine}"
    assert "lightning" not in reached, f"{name} reaches Lightning"


@pytest.mark.parametrize("path", _files("data"), ids=lambda p: str(p.relative_to(SRC)))
def test_data_never_imports_modeling(path: Path) -> None:
    model = sorted(m for m in _imports(path) if m.startswith("ordinalclip.modeling"))
    assert not model, f"{path.relative_to(SRC)} imports the model layer: {model}"


def test_the_reach_walker_finds_the_engine_where_it_is() -> None:
    """The rule above can fail: the training API does reach the engine and Lightning."""
    reached = _reaches(SRC / "api.py", in_functions=True)
    assert "ordinalclip.engine.module" in reached and "lightning" in reached
    assert "torch" in _reaches(SRC / "data" / "images.py", in_functions=False)


def test_the_runtime_wheel_ships_every_module_its_modules_import() -> None:
    """``packaging/runtime``'s module list is closed: what its modules import at import time (the command's
    sub-command modules included) is in the list, and none of it is the training stack."""
    import importlib.util

    spec = importlib.util.spec_from_file_location(
        "build_wheel", SRC.parents[1] / "packaging/runtime/build_wheel.py"
    )
    assert spec is not None and spec.loader is not None
    build_wheel = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(build_wheel)
    shipped = {SRC.parent / m for m in build_wheel.MODULES}
    for path in sorted(p for p in shipped if p.suffix == ".py"):
        reached = _reaches(path, in_functions=False)
        missing = sorted(m for m in reached if m.startswith("ordinalclip") and _file_of(m) not in shipped)
        assert not missing, f"{path.relative_to(SRC)} imports modules the runtime wheel lacks: {missing}"
        heavy = sorted(set(TRAINING_STACK) & reached)
        assert not heavy, f"{path.relative_to(SRC)} imports {heavy} at import time"
