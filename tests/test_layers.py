"""The layer rule, checked on the source: modeling imports nothing above it; the library never imports the app."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src" / "ordinalclip"


def _imported_modules(path: Path) -> set[str]:
    """Every ``ordinalclip...`` module a file imports, at top level or inside functions."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
            found.update(f"{node.module}.{a.name}" for a in node.names)
    return {m for m in found if m.split(".")[0] == "ordinalclip"}


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
        and m not in ("ordinalclip.__version__", "ordinalclip.lazy", "ordinalclip.lazy.lazy_attributes")
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
    assert _imported_modules(SRC / name) == set(), f"{name} must depend on nothing of ordinalclip"


# ------------------------------------------------------------------------------------ the deploy layers

TRAINING_STACK = ("torch", "torchvision", "lightning", "open_clip", "timm", "transformers")
# what the torch-free runtime may import of the package (each of them torch-free at import time)
RUNTIME_ALLOWED = (
    "ordinalclip.runtime",
    "ordinalclip.configtools",
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
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
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


def test_the_lazy_helper_depends_on_nothing_of_ordinalclip() -> None:
    assert not {m for m in _imports(SRC / "lazy.py") if m.startswith("ordinalclip")}


def test_the_reach_walker_finds_the_engine_where_it_is() -> None:
    """The rule above can fail: the training API does reach the engine and Lightning."""
    reached = _reaches(SRC / "api.py", in_functions=True)
    assert "ordinalclip.engine.module" in reached and "lightning" in reached
    assert "torch" in _reaches(SRC / "data" / "images.py", in_functions=False)
