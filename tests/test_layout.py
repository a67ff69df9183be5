"""The package's house rules, read from the source: no import cycle (imports inside functions
and under TYPE_CHECKING count), the two model families independent of each other, the library
independent of the command line, and no module over 600 lines."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "whisper_cli"
MAX_LINES = 600


def module_names(root: Path) -> dict[str, Path]:
    """Dotted name → file of every module under the package folder `root`."""
    names = {}
    for path in sorted(root.rglob("*.py")):
        parts = path.relative_to(root.parent).with_suffix("").parts
        if parts[-1] == "__init__":
            parts = parts[:-1]
        names[".".join(parts)] = path
    return names


def imports_of(path: Path, name: str, modules: dict[str, Path]) -> set[str]:
    """The package's modules that `path` (module `name`) imports anywhere in its text."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.rsplit(".", node.level - 1)[0] if node.level > 1 else package
                base = f"{anchor}.{base}" if base else anchor
            for alias in node.names:  # `from pkg import module` imports that module
                found.add(f"{base}.{alias.name}" if f"{base}.{alias.name}" in modules else base)
    return {module for module in found if module in modules and module != name}


def import_graph(root: Path) -> dict[str, set[str]]:
    modules = module_names(root)
    return {name: imports_of(path, name, modules) for name, path in modules.items()}


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan), plus self-loops."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for target in sorted(graph[node]):
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in on_stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def test_the_import_graph_has_no_cycle():
    assert cycles(import_graph(PACKAGE)) == []


def test_the_cycle_finder_sees_deferred_and_type_only_imports(tmp_path):
    package = tmp_path / "pkg"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "a.py").write_text("def f():\n    from pkg.b import g\n")
    (package / "b.py").write_text(
        "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from pkg import a\n"
    )
    (package / "c.py").write_text("from . import b\n")
    graph = import_graph(package)
    assert graph["pkg.c"] == {"pkg.b"}
    assert cycles(graph) == [["pkg.a", "pkg.b"]]


def _family(name: str) -> str | None:
    parts = name.split(".")
    return parts[1] if len(parts) > 1 and parts[1] in ("whisper", "speech2text") else None


def test_the_model_families_never_import_each_other():
    crossings = [
        (name, target)
        for name, targets in import_graph(PACKAGE).items()
        for target in targets
        if _family(name) and _family(target) and _family(name) != _family(target)
    ]
    assert crossings == []


def test_only_the_entry_points_import_the_command_line():
    users = {
        name
        for name, targets in import_graph(PACKAGE).items()
        if not name.startswith("whisper_cli.cli")
        and any(t == "whisper_cli.cli" or t.startswith("whisper_cli.cli.") for t in targets)
    }
    assert users <= {"whisper_cli.__main__", "whisper_cli._docs"}


@pytest.mark.parametrize("name", sorted(module_names(PACKAGE)))
def test_no_module_is_over_600_lines(name):
    lines = module_names(PACKAGE)[name].read_text(encoding="utf-8").count("\n")
    assert lines <= MAX_LINES, f"{name} has {lines} lines"
