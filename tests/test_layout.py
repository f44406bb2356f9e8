"""Structure rules: no import cycles between the package's modules, and no file of the repository
pointing at a document outside it."""

from __future__ import annotations

import ast
import re
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "python" / "threadx"


def _python_imports() -> dict[str, set[str]]:
    """module -> threadx modules it imports (at module level or inside functions)."""
    graph = {}
    for f in PACKAGE.glob("*.py"):
        deps = set()
        for node in ast.walk(ast.parse(f.read_text())):
            if (
                isinstance(node, ast.ImportFrom)
                and node.module
                and node.module.startswith("threadx")
            ):
                parts = node.module.split(".")
                deps |= {a.name for a in node.names} if len(parts) == 1 else {parts[1]}
            elif isinstance(node, ast.Import):
                for a in node.names:
                    if a.name == "threadx":
                        deps.add("__init__")
                    elif a.name.startswith("threadx."):
                        deps.add(a.name.split(".")[1])
        graph[f.stem] = {d for d in deps if d != f.stem and (PACKAGE / f"{d}.py").exists()}
    return graph


def _cycles(graph: dict[str, set[str]], entry: str) -> list[list[str]]:
    found = []

    def visit(node: str, path: list[str]) -> None:
        for dep in sorted(graph.get(node, ())):
            if dep in path:
                found.append(path[path.index(dep) :] + [dep])
            elif dep != entry:
                visit(dep, path + [dep])

    for start in graph:
        if start != entry:
            visit(start, [start])
    return found


def test_no_import_cycles_between_python_modules():
    # The package's __init__ is the entry point that imports the rest; the demo and the CLI may
    # import the package, but no module that __init__ imports may import a module that imports it.
    graph = _python_imports()
    assert graph["gpu"] >= {"_registry"}  # the analysis sees the imports at all
    assert not _cycles(graph, "__init__")


def test_the_repository_stands_alone():
    files = subprocess.run(
        ["git", "ls-files"], cwd=ROOT, capture_output=True, text=True, check=True
    ).stdout.split()
    outside = re.compile(r"\.\./shared|DESIGN\.md")
    bad = [
        f
        for f in files
        if f.endswith((".rs", ".py", ".md", ".sh", ".toml", ".cu", ".cuh", ".txt"))
        and f != "tests/test_layout.py"
        and outside.search((ROOT / f).read_text(errors="replace"))
    ]
    assert not bad, f"files citing documents outside the repository: {bad}"
