"""The house's layout: imports between streamem's modules run one way."""

from __future__ import annotations

import ast
from pathlib import Path

import streamem

PACKAGE = Path(streamem.__file__).parent


def _module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports(path: Path, modules: set[str]) -> set[str]:
    """The package's modules that ``path`` imports, at its top or inside functions."""
    name = _module_name(path)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
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
    paths = sorted(PACKAGE.rglob("*.py"))
    modules = {_module_name(path) for path in paths}
    graph = {_module_name(path): _imports(path, modules) for path in paths}
    graph = {name: {m for m in targets if m != "streamem"} for name, targets in graph.items()}  # the package's face
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
    assert "streamem.missing" in graph["streamem.base"]  # the check sees imports inside functions too


def test_the_documented_layout_names_every_module():
    text = (PACKAGE.parent / "docs" / "contributing.md").read_text()
    layout = text[text.index("Layout of `streamem/`") :].split("\n\n")[1]
    names = {path.name for path in PACKAGE.glob("*.py")} - {"__init__.py", "__main__.py"}
    unnamed = sorted(name for name in names if f"`{name}`" not in layout)
    assert not unnamed, f"the layout in docs/contributing.md does not name {unnamed}"
    assert "`sources/`" in layout


def test_no_module_imports_another_modules_private_names():
    found = []
    for path in sorted(PACKAGE.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and (node.level or (node.module or "").startswith("streamem")):
                found += [f"{path.name}: {alias.name}" for alias in node.names if alias.name.startswith("_")]
    assert not found, found
