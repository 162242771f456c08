"""What the overhead budget (``Guard(..., budget=...)``, :mod:`trainguard.core.budget`) costs in detection: the
dev corpus's plain PyTorch cases (those that build a ``trainguard.Guard``) run under ``observe`` with the budget
and without, scored as :mod:`benchmarks.diagnosis` scores them (faulty detected, live top cause right, healthy
flagged, confidently wrong).

    python -m benchmarks.budget_corpus [--budget 0.02] [--cap N] [--cache-dir runs/corpus_budget] [--jobs 1]
                                       [--case NAME ...]

The corpus cases are the measuring instrument and stay as they are: the budget reaches their guards through a
``sitecustomize`` module put on the runs' ``PYTHONPATH``, which gives every ``trainguard.Guard`` built without a
``budget=`` this one ("on"; the default budget is 0.02) or None ("off": every step in full; the Lightning and Hugging Face guards take their steps through ``begin_update``/
``end_update``: the budget does not reach them, so their cases are left out). Runs are cached under
``CACHE_DIR/on`` (``on_capN`` with ``--cap N``: the budget's cap in place of ``DEFAULT_CAP``) and ``CACHE_DIR/off``
as the diagnosis benchmark caches them. Never the held-out part.
"""
from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from benchmarks.corpus.registry import discover
from benchmarks.diagnosis import REPO, live_view, run_cases

SITE = '''import functools
import os
import trainguard.adapters.torch.guard as _guard

_setting = os.environ["TRAINGUARD_CORPUS_BUDGET"]
_share = None if _setting == "none" else float(_setting)
_init = _guard.Guard.__init__
_UNSET = object()
if os.environ.get("TRAINGUARD_CORPUS_BUDGET_CAP"):
    _guard.budget_init = functools.partial(_guard.budget_init, cap=int(os.environ["TRAINGUARD_CORPUS_BUDGET_CAP"]))


def _with_budget(self, *args, budget=_UNSET, **kwargs):
    if budget is _UNSET:
        budget = _share if type(self) is _guard.Guard else _guard.DEFAULT_SHARE
    _init(self, *args, budget=budget, **kwargs)


_guard.Guard.__init__ = _with_budget
'''


def plain_torch_cases(names: list[str]) -> list:
    cases = [c for c in discover() if not c.held_out and "torch_guard(" in c.path.read_text(encoding="utf-8")]
    return [c for c in cases if not names or c.name in names]


def run_side(cases: list, cache_dir: Path, budget: str, cap: int | None, site: Path, jobs: int) -> dict:
    """The cases' observe runs with every plain ``Guard`` given ``budget`` ("none": every step full) where the
    case does not set one, and the budget's ``cap``."""
    saved = dict(os.environ)
    try:
        os.environ["TRAINGUARD_CORPUS_BUDGET"] = budget
        if cap:
            os.environ["TRAINGUARD_CORPUS_BUDGET_CAP"] = str(cap)
        os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, [str(site.resolve()), saved.get("PYTHONPATH")]))
        label = "off" if budget == "none" else "on "
        return run_cases(cases, cache_dir, jobs, variants_of=lambda case: ("observe",),
                         progress=lambda line: print(label, line, flush=True))
    finally:
        os.environ.clear()
        os.environ.update(saved)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--budget", type=float, default=0.02)
    parser.add_argument("--cap", type=int, help="the budget's cap (default: trainguard.core.budget.DEFAULT_CAP)")
    parser.add_argument("--cache-dir", type=Path, default=REPO / "runs" / "corpus_budget")
    parser.add_argument("--jobs", type=int, default=1)
    parser.add_argument("--case", nargs="*", default=[])
    args = parser.parse_args(argv)
    cases = plain_torch_cases(args.case)
    site = args.cache_dir / "site"
    site.mkdir(parents=True, exist_ok=True)
    (site / "sitecustomize.py").write_text(SITE, encoding="utf-8")
    on = "on" if not args.cap else f"on_cap{args.cap}"
    results = {"on": run_side(cases, args.cache_dir / on, str(args.budget), args.cap, site, args.jobs),
               "off": run_side(cases, args.cache_dir / "off", "none", None, site, args.jobs)}
    causes = {c.name: next((r["meta"].get("cause") for side in results for r in results[side][c.name].values()
                            if r.get("meta")), "?") for c in cases}
    totals = {side: {"faulty": 0, "detected": 0, "right": 0, "confident_wrong": 0, "healthy": 0, "flagged": 0}
              for side in results}
    print(f"{'case':52} {'off: worst / top':44} {'on: worst / top':44}")
    for case in cases:
        cells = []
        for side in ("off", "on"):
            view = live_view(results[side][case.name].get("observe"))
            t = totals[side]
            if case.kind == "faulty":
                t["faulty"] += 1
                t["detected"] += view["detected"]
                t["right"] += view["top"] == causes[case.name]
                t["confident_wrong"] += (view["top"] not in ("none", "uncertain", causes[case.name])
                                         and view["confidence"] >= 0.6)
            else:
                t["healthy"] += 1
                t["flagged"] += view["detected"]
            cells.append(f"{view['worst'] or '-'} / {view['top']} {view['confidence']:.2f}"
                         + ("" if view["ran"] else " (did not run)"))
        print(f"{case.name:52} {cells[0]:44} {cells[1]:44}")
    for side, t in totals.items():
        print(f"{side}: faulty detected {t['detected']}/{t['faulty']}, top cause right {t['right']}/{t['faulty']}, "
              f"confident-wrong {t['confident_wrong']}/{t['faulty']}, healthy flagged {t['flagged']}/{t['healthy']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
