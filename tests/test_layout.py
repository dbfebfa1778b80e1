"""The architecture, checked: imports point one way (down the layers), no cycles, and reading results never
imports TensorFlow. The layers are the ones docs/architecture.md draws."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "tf2bench"

# Lower numbers are lower layers; a module may import its own layer (without cycles) and the ones below. A package
# is one unit: tf2bench/<package>/ sits on one floor (docs/architecture.md draws them).
LAYERS: dict[str, int] = {
    **dict.fromkeys(("errors", "nest", "registry"), 0),  # the ground floor: no tf2bench imports above it
    "measure": 1,  # clocks and sync, peak, memory, profiler traces and op tables, the machine
    "saved": 1,  # the saved format: a benchmark's record, files written whole, the run document
    "analysis": 2,  # reads saved runs; never TensorFlow
    "workloads": 3,  # what is trained
    "loops": 4,  # how it is trained
    "suite": 5,  # running a suite: options, the case plan, presets, the run sequence, calibration, worker processes
    **dict.fromkeys(
        ("multiworker", "plugin", "pytest_plugin", "process_plugin", "api", "cli", "bisect", "doctor", "tb"), 6
    ),  # entry points
}
MAX_LINES = 350  # a module holds one job


def module_name(path: Path) -> str:
    rel = path.relative_to(PACKAGE.parent).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def modules() -> dict[str, Path]:
    return {module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def imports_of(path: Path, known: set[str]) -> set[str]:
    """Every tf2bench module ``path`` imports, at module level or inside functions."""
    out: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            out |= {a.name for a in node.names if a.name.startswith("tf2bench")}
        elif isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("tf2bench"):
            for alias in node.names:  # `from tf2bench.x import y`: y may be a submodule
                sub = f"{node.module}.{alias.name}"
                out.add(sub if sub in known else node.module)
    return {m for m in out if m in known}


def layer(module: str) -> int:
    parts = module.split(".")
    if len(parts) == 1:  # tf2bench/__init__.py: the public names, an entry point
        return 6
    return LAYERS[parts[1]]


def graph() -> dict[str, set[str]]:
    found = modules()
    return {m: imports_of(p, set(found)) - {m} for m, p in found.items()}


def test_every_module_has_a_layer():
    unplaced = [m for m in modules() if m != "tf2bench" and m.split(".")[1] not in LAYERS]
    assert not unplaced, f"place these modules in a layer (tests/test_layout.py and docs/architecture.md): {unplaced}"


def test_imports_point_down_only():
    upward = [
        f"{m} (layer {layer(m)}) imports {d} (layer {layer(d)})"
        for m, deps in graph().items()
        for d in deps
        if layer(d) > layer(m)
    ]
    assert not upward, "\n".join(upward)


def test_no_import_cycles():
    g = graph()
    state: dict[str, int] = {}
    cycles: list[list[str]] = []

    def visit(m: str, stack: list[str]) -> None:
        state[m] = 1
        for d in sorted(g[m]):
            if state.get(d) == 1:
                cycles.append([*stack[stack.index(d) :], d])
            elif d not in state:
                visit(d, [*stack, d])
        state[m] = 2

    for m in sorted(g):
        if m not in state:
            visit(m, [m])
    assert not cycles, "\n".join(" -> ".join(c) for c in cycles)


def private_uses(path: Path, known: set[str]) -> list[str]:
    """``from tf2bench.x import _name`` and ``module._name`` where ``module`` is a tf2bench module imported here."""
    tree = ast.parse(path.read_text())
    modules_here: set[str] = set()
    out = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("tf2bench"):
            for alias in node.names:
                if f"{node.module}.{alias.name}" in known:
                    modules_here.add(alias.asname or alias.name)
                elif alias.name.startswith("_") and not alias.name.startswith("__"):
                    out.append(f"line {node.lineno}: from {node.module} import {alias.name}")
        elif isinstance(node, ast.Import):
            modules_here |= {a.asname for a in node.names if a.name.startswith("tf2bench") and a.asname}
    for node in ast.walk(tree):
        if (
            isinstance(node, ast.Attribute)
            and isinstance(node.value, ast.Name)
            and node.value.id in modules_here
            and node.attr.startswith("_")
            and not node.attr.startswith("__")
        ):
            out.append(f"line {node.lineno}: {node.value.id}.{node.attr}")
    return out


def test_no_private_name_crosses_modules():
    found = modules()
    bad = [f"{m}: {use}" for m, p in found.items() for use in private_uses(p, set(found))]
    assert not bad, "make these public or keep them in their module:\n" + "\n".join(bad)


def test_modules_stay_small():
    big = {m: n for m, p in modules().items() if (n := len(p.read_text().splitlines())) > MAX_LINES}
    assert not big, f"split these modules (> {MAX_LINES} lines): {big}"


@pytest.mark.parametrize(
    "modules_to_import",
    [
        "tf2bench.analysis.report, tf2bench.analysis.compare, tf2bench.analysis.runs, tf2bench.analysis.equivalence, "
        "tf2bench.analysis.history, tf2bench.analysis.render",
        "tf2bench.cli",
    ],
)
def test_reading_results_never_imports_tensorflow(modules_to_import):
    code = f"import sys, {modules_to_import}; print('tensorflow' in sys.modules, 'keras' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True)
    assert out.stdout.split() == ["False", "False"], out.stdout + out.stderr


def test_architecture_page_names_every_module():
    """docs/architecture.md draws the tree: a module it does not name is a module a newcomer cannot place."""
    page = (PACKAGE.parent / "docs" / "architecture.md").read_text()
    names = {p.name for p in PACKAGE.rglob("*.py") if p.name != "__init__.py"} | {
        f"{p.parent.name}/" for p in PACKAGE.rglob("__init__.py") if p.parent != PACKAGE
    }
    missing = sorted(n for n in names if n not in page)
    assert not missing, f"docs/architecture.md does not name: {missing}"
