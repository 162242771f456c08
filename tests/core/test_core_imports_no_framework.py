"""The core must run with numpy and the standard library alone."""
import ast
import pathlib
import subprocess
import sys

import trainguard.core

CORE = pathlib.Path(trainguard.core.__file__).parent
FRAMEWORKS = {"torch", "keras", "tensorflow", "jax", "lightning", "pytorch_lightning", "transformers"}
ALLOWED_THIRD_PARTY = {"numpy"}


def _imported_roots(path: pathlib.Path) -> set[str]:
    roots = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            roots.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            roots.add(node.module.split(".")[0])
    return roots


def test_core_sources_import_only_numpy_stdlib_and_core():
    offenders = {}
    for path in CORE.rglob("*.py"):
        bad = {r for r in _imported_roots(path)
               if r not in sys.stdlib_module_names and r not in ALLOWED_THIRD_PARTY and r != "trainguard"}
        bad |= {r for r in _imported_roots(path) if r in FRAMEWORKS}
        if bad:
            offenders[str(path.relative_to(CORE))] = sorted(bad)
    assert offenders == {}


def test_core_sources_import_no_trainguard_module_outside_core():
    offenders = []
    for path in CORE.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("trainguard"):
                if not node.module.startswith("trainguard.core"):
                    offenders.append(f"{path.name}: {node.module}")
    assert offenders == []


def test_importing_core_loads_no_framework():
    code = ("import sys, trainguard.core, trainguard.core.detectors; "
            f"print(sorted(m for m in {sorted(FRAMEWORKS)!r} if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
