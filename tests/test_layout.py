"""The house's layout: imports between streamem's modules and sub-packages run one way, the
numerical core needs only numpy and scipy, and the documented layout names every module."""

from __future__ import annotations

import ast
import sys
from pathlib import Path

import streamem

PACKAGE = Path(streamem.__file__).parent


def _module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


#: the sub-packages from the bottom up: each imports only those before it (and itself)
LAYERS = ("core", "engine", "data", "models", "stream")
#: the edge, which nothing in the library imports
EDGE = ("cli", "plot", "__main__")


def _graph() -> dict[str, set[str]]:
    paths = sorted(PACKAGE.rglob("*.py"))
    modules = {_module_name(path) for path in paths}
    return {_module_name(path): _imports(path, modules) for path in paths}


def _layer(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else ""


def _runtime_nodes(tree: ast.AST):
    """Every node of ``tree`` but those under ``if TYPE_CHECKING:`` (imports for annotations
    only, which never run)."""
    typing_only = {
        id(inner)
        for node in ast.walk(tree)
        if isinstance(node, ast.If) and isinstance(node.test, ast.Name) and node.test.id == "TYPE_CHECKING"
        for statement in node.body
        for inner in ast.walk(statement)
    }
    return (node for node in ast.walk(tree) if id(node) not in typing_only)


def _imports(path: Path, modules: set[str]) -> set[str]:
    """The package's modules that ``path`` imports, at its top or inside functions."""
    name = _module_name(path)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = set()
    for node in _runtime_nodes(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(anchor + ([base] if base else []))
            for alias in node.names:  # "from . import io" imports a module
                if f"{base}.{alias.name}" in modules:
                    found.add(f"{base}.{alias.name}")
            if base in modules:
                found.add(base)
        elif isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names if alias.name in modules)
    found.discard(name)
    return found


def test_no_import_circles():
    graph = {name: {m for m in targets if m != "streamem"} for name, targets in _graph().items()}  # the package's face
    state, circles = {}, []

    def visit(name, trail):
        state[name] = "open"
        for target in sorted(graph[name]):
            if state.get(target) == "open":
                circles.append(trail[trail.index(target) :] + [target])
            elif target not in state:
                visit(target, trail + [target])
        state[name] = "done"

    for name in sorted(graph):
        if name not in state:
            visit(name, [name])
    assert not circles, "import circles: " + "; ".join(" -> ".join(circle) for circle in circles)
    assert "streamem.models.export" in graph["streamem.models.base"]  # the check sees imports inside functions too


def test_each_package_imports_only_the_packages_below_it():
    graph = _graph()
    upward = []
    for name, targets in graph.items():
        layer = _layer(name)
        for target in targets - {"streamem"}:
            below = _layer(target)
            if below in EDGE and layer not in EDGE:
                upward.append(f"{name} -> {target} (the edge)")
            elif layer in LAYERS and below in LAYERS and LAYERS.index(below) > LAYERS.index(layer):
                upward.append(f"{name} -> {target}")
    assert not upward, "imports that run back up: " + "; ".join(sorted(upward))
    assert graph["streamem.engine.em"] and graph["streamem.models.gaussian"]  # the graph is read


def test_the_core_imports_only_numpy_and_scipy():
    allowed = {"numpy", "scipy", "streamem"} | set(sys.stdlib_module_names)
    found = []
    for path in sorted((PACKAGE / "core").rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else []
            if isinstance(node, ast.ImportFrom) and not node.level:
                names = [node.module]
            found += [f"{path.name}: {n}" for n in names if n.split(".")[0] not in allowed]
    assert not found, found


def test_the_documented_layout_names_every_module():
    text = (PACKAGE.parent / "docs" / "contributing.md").read_text()
    layout = text[text.index("Layout of `streamem/`") :].split("\n\n")[1]
    unnamed = []
    for path in sorted(PACKAGE.rglob("*.py")):
        if path.name in ("__init__.py", "__main__.py"):
            continue
        folder = path.parent.relative_to(PACKAGE).parts
        if folder and f"`{folder[0]}/`" not in layout:
            unnamed.append(f"{folder[0]}/")
        if path.parent.name != "sources" and f"`{path.name}`" not in layout:
            unnamed.append(str(path.relative_to(PACKAGE)))
    assert not unnamed, f"the layout in docs/contributing.md does not name {sorted(set(unnamed))}"
    assert "`sources/`" in layout


def test_no_module_imports_another_modules_private_names():
    found = []
    for path in sorted(PACKAGE.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and (node.level or (node.module or "").startswith("streamem")):
                found += [f"{path.name}: {alias.name}" for alias in node.names if alias.name.startswith("_")]
    assert not found, found
