"""The package's shape, as pwopsd/README.md states it: floors, one-way imports, small modules.

The floor table is read from the README, so the map and the code cannot drift apart: a new
module must be placed on a floor, and an import that points up fails here, naming both ends.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "pwopsd"
MAX_MODULE_LINES = 500
MAX_FUNCTION_LINES = 80
KERNELS = {"pwopsd.kernels.triton_fkl"}
"""Modules whose functions may be long: GPU kernels written as one body."""
BENCHMARK_PROGRAMS = "pwopsd.bench."
"""Each ``pwopsd.bench.<name>`` module is one benchmark program (``python -m pwopsd.bench
<name>`` dispatches to its ``main``): a command line by nature, not a library module."""


def _modules() -> dict[str, Path]:
    out = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        out[name] = path
    return out


MODULES = _modules()


def _floors() -> dict[str, int]:
    """Top-level module -> floor, from the README's table."""
    floors = {}
    for line in (PACKAGE / "README.md").read_text().splitlines():
        m = re.match(r"\| (\d+) \| (.+?) \|", line)
        if m:
            for name in re.findall(r"`(\w+)`", m[2]):
                floors[f"pwopsd.{name}"] = int(m[1])
    return floors


def _top(module: str) -> str:
    return ".".join(module.split(".")[:2])


def _imports(module: str) -> set[str]:
    """Project modules ``module`` imports anywhere in its body (functions included)."""
    found = set()
    for node in ast.walk(ast.parse(MODULES[module].read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("pwopsd"):
            submodules = {f"{node.module}.{a.name}" for a in node.names} & set(MODULES)
            found.update(submodules)
            # "from pkg import submodule" and a package's own modules reading their
            # package run pkg/__init__ anyway; only a name defined there is a real edge
            if len(submodules) < len(node.names) and not module.startswith(node.module + "."):
                found.add(node.module)
        elif isinstance(node, ast.Import):
            found.update(a.name for a in node.names if a.name.startswith("pwopsd"))
    return {m for m in found if m in MODULES and m != module and m != "pwopsd"}


def test_every_module_has_a_floor_and_imports_only_down():
    floors = _floors()
    missing = sorted({_top(m) for m in MODULES if m != "pwopsd"} - set(floors))
    assert not missing, f"modules missing from pwopsd/README.md's floor table: {missing}"
    upward = [
        f"{m} (floor {floors[_top(m)]}) imports {d} (floor {floors[_top(d)]})"
        for m in MODULES
        if m != "pwopsd"
        for d in _imports(m)
        if floors[_top(d)] > floors[_top(m)]
    ]
    assert not upward, "imports that point up:\n" + "\n".join(upward)


def test_no_import_cycles():
    graph = {m: _imports(m) for m in MODULES}
    state: dict[str, int] = {}

    def visit(m: str, path: list[str]) -> None:
        state[m] = 1
        for d in sorted(graph[m]):
            if state.get(d) == 1:
                raise AssertionError("import cycle: " + " -> ".join([*path, m, d]))
            if d not in state:
                visit(d, [*path, m])
        state[m] = 2

    for m in sorted(graph):
        if m not in state:
            visit(m, [])


def test_modules_and_functions_stay_small():
    long_modules = [
        f"{m}: {n} lines"
        for m, p in MODULES.items()
        if (n := len(p.read_text().splitlines())) > MAX_MODULE_LINES
    ]
    assert not long_modules, long_modules
    long_functions = []
    for m, p in MODULES.items():
        if m in KERNELS:
            continue
        for node in ast.walk(ast.parse(p.read_text())):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                n = node.end_lineno - node.lineno + 1
                if n > MAX_FUNCTION_LINES:
                    long_functions.append(f"{m}.{node.name}: {n} lines")
    assert not long_functions, long_functions


def test_command_lines_live_in_main_files():
    with_main = [
        m
        for m, p in MODULES.items()
        if p.name != "__main__.py"
        and not m.startswith(BENCHMARK_PROGRAMS)
        and any(
            isinstance(n, ast.FunctionDef) and n.name == "main"
            for n in ast.parse(p.read_text()).body
        )
    ]
    assert not with_main, f"library modules with a main(): {with_main}"


@pytest.mark.parametrize("module", ["pwopsd.train", "pwopsd.evaluate", "pwopsd.toy"])
def test_the_command_lines_the_readme_lists_exist(module):
    assert (MODULES[module].parent / "__main__.py").is_file()
    assert f"python -m {module}" in (PACKAGE / "README.md").read_text()
