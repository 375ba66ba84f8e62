"""The house rules of the layout (issue 11), checked on the source itself: no import cycle, the
layers respected, no file over 500 lines, and the README's layout list matching the tree."""

from __future__ import annotations

import ast
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("failover", "agents")
MAX_LINES = 500


def modules() -> dict[str, Path]:
    """Every module of the project by dotted name (a package by its own name)."""
    found = {}
    for package in PACKAGES:
        for path in (ROOT / package).rglob("*.py"):
            parts = list(path.relative_to(ROOT).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts.pop()
            found[".".join(parts)] = path
    return found


def imports(path: Path, known: dict[str, Path]) -> set[str]:
    """The project modules `path` imports at module level or inside functions alike."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            # `from failover.machine import claim` imports the module claim when there is one
            names = [f"{node.module}.{alias.name}" for alias in node.names] + [node.module]
        else:
            continue
        for name in names:
            while name and name not in known:
                name = name.rpartition(".")[0]
            if name:
                found.add(name)
    return found


def graph() -> dict[str, set[str]]:
    known = modules()
    edges = {name: imports(path, known) - {name} for name, path in known.items()}
    for name in known:  # importing a.b.c runs a and a.b first: a submodule depends on its packages
        parent = name.rpartition(".")[0]
        while parent:
            edges[name].add(parent)
            parent = parent.rpartition(".")[0]
    return edges


def cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan), ignoring the edge from a
    package's __init__ to its own submodules, which Python resolves without a cycle."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in edges[v]:
            if w.startswith(v + "."):
                continue  # a package importing its own submodule
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

    for v in sorted(edges):
        if v not in index:
            visit(v)
    return found


def test_there_is_no_import_cycle() -> None:
    assert cycles(graph()) == []


def test_the_library_imports_no_program_and_no_command() -> None:
    for name, targets in graph().items():
        if not name.startswith("failover"):
            continue
        assert not {t for t in targets if t.startswith("agents")}, f"{name} imports the programs in agents/"
        if not name.startswith("failover.cli"):
            assert not {t for t in targets if t.startswith("failover.cli")}, f"{name} imports the command line"


def test_the_command_modules_import_only_the_shared_context_of_the_cli() -> None:
    known = modules()
    for name, path in known.items():
        if name.startswith("failover.cli.") and name not in ("failover.cli.context", "failover.cli.__main__"):
            cli = {t for t in imports(path, known) if t.startswith("failover.cli")}
            assert cli <= {"failover.cli.context"}, f"{name} imports {sorted(cli)}: share only failover.cli.context"


def test_the_machine_is_the_bottom_layer() -> None:
    for name, targets in graph().items():
        if name.startswith("failover.machine"):
            allowed = ("failover", "failover.errors")
            outside = {t for t in targets if not t.startswith("failover.machine") and t not in allowed}
            assert not outside, f"{name} imports {sorted(outside)}"


def test_no_file_is_over_500_lines() -> None:
    long = {
        str(path.relative_to(ROOT)): n
        for package in (*PACKAGES, "tests", "bench")
        for path in (ROOT / package).rglob("*.py")
        if (n := len(path.read_text().splitlines())) > MAX_LINES
    }
    assert not long, f"over {MAX_LINES} lines: {long}"


def readme_layout() -> set[str]:
    text = (ROOT / "README.md").read_text()
    block = text.split("## Layout", 1)[1].split("```", 2)[1]
    return {m.group(1) for m in re.finditer(r"^((?:failover|agents)/\S+\.py)\b", block, re.M)}


def test_the_readme_layout_lists_every_module_and_nothing_else() -> None:
    tree = {str(p.relative_to(ROOT)) for package in PACKAGES for p in (ROOT / package).rglob("*.py")}
    listed = readme_layout()
    assert not tree - listed, f"modules missing from README's layout: {sorted(tree - listed)}"
    assert not listed - tree, f"README's layout names modules that do not exist: {sorted(listed - tree)}"
