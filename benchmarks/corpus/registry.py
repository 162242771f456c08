"""Finding the corpus cases, loading one, and the held-out split.

A case is a module ``<corpus>/faulty/<name>.py`` or ``<corpus>/healthy/<name>.py`` (files whose name starts with
``_`` are shared helpers, not cases). The held-out third was fixed before anyone saw the cases: a case is held out
iff ``int(sha256(name).hexdigest(), 16) % 3 == 0``, a pseudo-random choice that depends on the name alone, so a
case can neither be moved between the parts nor placed by whoever tunes the rules. ``holdout.json`` records the
resulting list (``python -m benchmarks.diagnosis --write-holdout``) and a test checks it against the rule.
"""
from __future__ import annotations

import ast
import hashlib
import importlib
import importlib.util
import json
import sys
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType

from benchmarks.corpus.case import KINDS

__all__ = ["CORPUS_DIR", "HOLDOUT_FILE", "CaseFile", "discover", "load_case", "is_held_out", "holdout_record",
           "write_holdout", "PARTS", "in_part",
           "declared_fields"]

CORPUS_DIR = Path(__file__).resolve().parent
HOLDOUT_FILE = CORPUS_DIR / "holdout.json"
PARTS = ("dev", "holdout", "all")


@dataclass(frozen=True)
class CaseFile:
    """A case module on disk; its ``CASE`` is read only when the case is loaded."""

    name: str
    kind: str  # the folder: "faulty" or "healthy"
    path: Path

    @property
    def held_out(self) -> bool:
        return is_held_out(self.name)


def is_held_out(name: str) -> bool:
    return int(hashlib.sha256(name.encode("utf-8")).hexdigest(), 16) % 3 == 0


def in_part(name: str, part: str) -> bool:
    if part == "all":
        return True
    return is_held_out(name) == (part == "holdout")


def discover(root: Path = CORPUS_DIR) -> list[CaseFile]:
    """Every case under ``root``, faulty first, each part sorted by name."""
    found = []
    for kind in KINDS:
        for path in sorted((root / kind).glob("*.py")):
            if not path.name.startswith("_"):
                found.append(CaseFile(path.stem, kind, path))
    return found


def load_case(case_file: CaseFile) -> ModuleType:
    """Imports a case module: by its package name inside this repository (so it may import its folder's helpers),
    by path elsewhere (a corpus kept outside the repository, as the tests' throwaway cases are)."""
    path = case_file.path.resolve()
    if path.parent.parent == CORPUS_DIR:
        return importlib.import_module(f"benchmarks.corpus.{case_file.kind}.{case_file.name}")
    module_name = f"_corpus_case_{case_file.kind}_{case_file.name}"
    spec = importlib.util.spec_from_file_location(module_name, path)
    if spec is None or spec.loader is None:
        raise ImportError(f"{path}: not a Python module")
    module = importlib.util.module_from_spec(spec)
    sys.modules[module_name] = module
    spec.loader.exec_module(module)
    return module


def declared_fields(case_file: CaseFile) -> dict[str, object]:
    """The literal keyword arguments of the module's ``CASE = Case(...)``, read without importing it (a case's
    imports can take seconds: selecting cases by cause or framework should not pay them). Fields given as
    expressions are left out; ``load_case`` gives the full ``CASE``."""
    tree = ast.parse(case_file.path.read_text(encoding="utf-8"), filename=str(case_file.path))
    for node in tree.body:
        if (isinstance(node, (ast.Assign, ast.AnnAssign)) and isinstance(node.value, ast.Call)
                and any(isinstance(t, ast.Name) and t.id == "CASE"
                        for t in (node.targets if isinstance(node, ast.Assign) else [node.target]))):
            fields = {}
            for keyword in node.value.keywords:
                try:
                    fields[keyword.arg] = ast.literal_eval(keyword.value)
                except ValueError:
                    pass
            return fields
    return {}


def holdout_record(cases: list[CaseFile]) -> dict[str, object]:
    """What ``holdout.json`` holds: the rule, and the held-out names of each part."""
    return {"rule": "a case is held out iff int(sha256(name).hexdigest(), 16) % 3 == 0",
            **{kind: sorted(c.name for c in cases if c.kind == kind and c.held_out) for kind in KINDS}}


def write_holdout(cases: list[CaseFile], path: Path = HOLDOUT_FILE) -> None:
    path.write_text(json.dumps(holdout_record(cases), indent=1) + "\n", encoding="utf-8")
