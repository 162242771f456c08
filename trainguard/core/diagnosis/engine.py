"""The diagnosis engine: statistics and findings in, ranked causes out.

1. The signal detectors the rules need (data scale, module modes, Adam update RMS, activation health, loss vs
   batch size, Adam's first update against the weights) are replayed over the statistics, so a diagnosis works on any stream: a live guard's, a Keras
   callback's, or a run log read back from disk. Their findings are merged with the given ones (duplicates
   dropped). When ``findings`` is None the default detectors are replayed too.
2. Every rule (``rules.RULES``, one per cause code) looks at the run and proposes its cause with a confidence.
3. Causes that explain others cap them (``EXPLAINS``): a symptom's confidence becomes at most 0.9x its root's,
   and its evidence names the root under ``explained_by``. BatchNorm in eval mode, a lagging Adam second moment,
   a batch-size-dependent loss and unscaled *inputs* all make gradients explode; an exploding gradient is not
   then the root cause, only the way it showed.
4. Causes below ``min_confidence`` (0.3) are dropped; the rest are ranked by confidence.
5. A trial that ``policy="auto"`` kept is an experiment: the change its cause's fix makes was applied from a
   snapshot and the loss beat its trend. Its cause is confirmed (0.9, ``evidence["kept_trial"]``), even when the
   repair removed the symptom the rules would have read (``actions``: the run's actions, trials among them).
6. A run whose loss went non-finite before 8 finite values (``RunView.early_blow_up``: an epoch-level log that is
   NaN from its first row) has no course for a rule to read; when no rule proposed anything, the causes of a
   blow-up (``BLOW_UP_CANDIDATES``) are each a candidate (0.4), so the diagnosis is ``uncertain`` with them rather
   than empty next to a non-finite error.
7. Uncertain rather than confidently wrong: a rule reaches 0.6 only with evidence that separates its cause from
   the look-alikes (``evidence["separated_by"]``, enforced by ``rules._make``). When the leading root cause
   stays below 0.6 and another root cause is less than ``TIE`` (0.1) below it, the diagnosis starts with an
   ``uncertain`` cause whose evidence lists the candidates, each with its confidence, its message and what
   would separate it (``WOULD_SEPARATE``); the candidates follow it in the list.

The same engine reads every source: a live guard's statistics, a run log, and the doctor's series of a log
file (loss, LR, gradient norm, evaluation loss at whatever interval, plus the doctor's whole-run findings).
Whatever a source lacks, the rules that need it stay silent or weak.

A healthy run gives an empty list; ``top_code([])`` is ``"none"`` (the code the JSON outputs use for it).
"""
from __future__ import annotations

from typing import Any, Callable, NamedTuple, Sequence

from trainguard.core.actions import Action
from trainguard.core.causes import CAUSES
from trainguard.core.detector import Detector, chain, replay
from trainguard.core.detectors.accumulation_spill import accumulation_spill
from trainguard.core.detectors.activation_health import activation_health
from trainguard.core.detectors.adam_update import adam_update
from trainguard.core.detectors.batch_size_loss import batch_size_loss
from trainguard.core.detectors.data_scale import data_scale
from trainguard.core.detectors.first_update import first_update
from trainguard.core.detectors.module_mode import module_mode
from trainguard.core.diagnosis.cause import FRAMEWORKS, Cause
from trainguard.core.diagnosis.fixes import fix_for
from trainguard.core.diagnosis.rules import RULES
from trainguard.core.diagnosis.rules._make import CANDIDATE, CONFIDENT, make_cause
from trainguard.core.diagnosis.run_view import RunView
from trainguard.core.findings import Finding
from trainguard.core.stats import StepStats

__all__ = ["diagnose", "signal_detectors", "EXPLAINS", "MIN_CONFIDENCE", "TIE", "WOULD_SEPARATE"]

MIN_CONFIDENCE = 0.3
SYMPTOM_CAP = 0.9
KEPT_TRIAL = 0.9


def signal_detectors() -> Detector:
    """The detectors whose findings the rules read beyond the foundation's, with their default thresholds."""
    return chain(data_scale(), module_mode(), adam_update(), activation_health(), batch_size_loss(), first_update(),
                 accumulation_spill())


class Explains(NamedTuple):
    root: str
    symptoms: frozenset[str]
    when: Callable[[Cause], bool]


def _always(cause: Cause) -> bool:
    return True


def _separated(cause: Cause) -> bool:
    return "separated_by" in cause.evidence


_INSTABILITY_CAUSES = frozenset({"exploding_gradient", "lr_too_high", "bad_batch"})
_STALL_CAUSES = frozenset({"vanishing_gradient", "lr_too_low"})

EXPLAINS: tuple[Explains, ...] = (
    # BatchNorm in training mode would have normalized what the network saw, off-scale inputs included.
    Explains("bn_inference_mode", _INSTABILITY_CAUSES | {"dead_relu", "unscaled_data"},
             lambda c: bool(c.evidence.get("unstable_or_stalled"))),
    Explains("adam_epsilon", _INSTABILITY_CAUSES, _separated),
    Explains("batch_size_dependent_loss", _INSTABILITY_CAUSES, _separated),
    Explains("unscaled_data", _INSTABILITY_CAUSES, lambda c: bool(c.evidence.get("explains_instability"))),
    Explains("unscaled_data", frozenset({"saturated_activation", "vanishing_gradient", "dead_relu", "adam_epsilon",
                                         "lr_too_low"}), lambda c: bool(c.evidence.get("explains_stall"))),
    # Measured dead or saturated units make the gradients vanish and the loss stall.
    Explains("dead_relu", _STALL_CAUSES, _separated),
    Explains("saturated_activation", _STALL_CAUSES, _separated),
    Explains("vanishing_gradient", frozenset({"lr_too_low"}), _separated),
    # Every layer moving too far makes the gradient explode, and pushes units into saturation or death; an
    # explosion makes a spike look like a bad batch.
    Explains("lr_too_high", frozenset({"exploding_gradient", "bad_batch", "dead_relu", "saturated_activation"}),
             _separated),
    Explains("exploding_gradient", frozenset({"bad_batch"}), _always),
)

TIE = 0.1

# What would tell a candidate apart from its look-alikes: the evidence to record (docs/causes.md#uncertain).
WOULD_SEPARATE: dict[str, str] = {
    "unscaled_data": "the data's scale (guard.step(loss, inputs=x, targets=y)) or the first loss",
    "lr_too_high": "update-to-weight ratios of every layer (per-layer statistics) or a logged LR schedule",
    "lr_too_low": "update-to-weight ratios of every layer, or the logged LR",
    "vanishing_gradient": "per-layer gradient norms with activation statistics (neither dead nor saturated)",
    "exploding_gradient": "the gradient norm every step: growth that stays up",
    "batch_size_dependent_loss": "the batch size every step",
    "adam_epsilon": "Adam's update RMS per layer",
    "bad_batch": "the loss every step around the spike, and the batch's fingerprint (preset='forensic')",
    "bn_inference_mode": "the modules' train/eval modes",
    "dead_relu": "activation statistics, or the fraction of exactly-zero gradients per layer",
    "saturated_activation": "activation statistics of the sigmoid/tanh layers",
    "overfitting": "a validation loss",
}


def diagnose(stats: Sequence[StepStats], findings: Sequence[Finding] | None = None, framework: str = "torch",
             *, min_confidence: float = MIN_CONFIDENCE, actions: Sequence[Action] = ()) -> list[Cause]:
    """Ranked root causes of what went wrong in a run; ``[]`` for a healthy run.

    ``framework`` ("torch" or "keras") picks the snippet ``str(cause.fix)`` shows. ``actions``: what a repair
    policy did; a kept trial confirms its cause.
    """
    if framework not in FRAMEWORKS:
        raise ValueError(f"unknown framework {framework!r}; expected one of {', '.join(FRAMEWORKS)}")
    in_order = sorted(stats, key=lambda s: s.step)
    if findings is None:
        from trainguard.core.detectors import default_detectors

        findings = replay(default_detectors(), in_order)[0]
    merged = _dedupe([*findings, *replay(signal_detectors(), in_order)[0]])
    view = RunView.build(stats, merged, framework)
    causes = {code: cause for code, rule in RULES.items() if (cause := rule(view)) is not None}
    causes.update(_confirmed_by_trials(view, causes, actions))
    for relation in EXPLAINS:
        root = causes.get(relation.root)
        if root is None or not relation.when(root):
            continue
        for code in relation.symptoms & causes.keys():
            causes[code] = _explained(causes[code], root)
    if not causes and view.early_blow_up is not None:
        causes = _blow_up_candidates(view)
    ranked = sorted(causes.values(), key=lambda c: (-c.confidence, CAUSES.index(c.code)))
    ranked = [c for c in ranked if c.confidence >= min_confidence]
    return _uncertain(ranked, framework) + ranked


def _confirmed_by_trials(view: RunView, causes: dict[str, Cause], actions: Sequence[Action]) -> dict[str, Cause]:
    confirmed = {}
    for action in actions:
        code = action.params.get("cause")
        if action.kind != "trial" or not action.effect.get("kept") or code not in CAUSES:
            continue
        trial = {"step": action.step, "repair": action.params.get("repair"),
                 "loss_trend": action.effect.get("loss_trend"), "loss_window": action.effect.get("loss_window")}
        ruled = causes.get(code)
        evidence = {**(ruled.evidence if ruled else {}), "kept_trial": trial,
                    "separated_by": "a kept trial: its repair was applied from a snapshot and the loss beat its trend"}
        message = (ruled.message + "; " if ruled else "") + (
            f"confirmed by a trial at step {action.step}: {action.params.get('repair')} was kept, the loss fell below "
            "its trend")
        confidence = max(KEPT_TRIAL, ruled.confidence if ruled else 0.0)
        confirmed[code] = make_cause(view, code, confidence, evidence, message)
    return confirmed


# What makes a loss non-finite within its first points, each a candidate when nothing in the run separates them.
BLOW_UP_CANDIDATES: dict[str, str] = {
    "lr_too_high": "a learning rate too high",
    "exploding_gradient": "an exploding gradient",
    "unscaled_data": "data far from unit scale",
    "adam_epsilon": "Adam's epsilon too small for the precision (in float16 small squared gradients underflow to 0)",
    "bad_batch": "a batch holding NaN, Inf or extreme values",
}


def _blow_up_candidates(view: RunView) -> dict[str, Cause]:
    """No rule proposed a cause for a run whose loss went non-finite within its first points (an epoch-level log
    that is NaN from its first row): the causes of a blow-up, each a candidate."""
    blow_up = view.early_blow_up
    where = (f"the loss was non-finite from step {blow_up['non_finite_from_step']}, after "
             f"{blow_up['finite_losses_before']} finite values: too short a course to tell the causes apart")
    return {code: make_cause(view, code, CANDIDATE, {"early_blow_up": blow_up}, f"{where}; {what} is one candidate")
            for code, what in BLOW_UP_CANDIDATES.items()}


def _uncertain(ranked: list[Cause], framework: str) -> list[Cause]:
    """``[uncertain]`` when the leading root cause is below ``CONFIDENT`` and another is within ``TIE``."""
    roots = [c for c in ranked if "explained_by" not in c.evidence]
    if not roots or roots[0].confidence >= CONFIDENT:
        return []
    close = [c for c in roots if c.confidence > roots[0].confidence - TIE]
    if len(close) < 2:
        return []
    candidates = [{"code": c.code, "confidence": c.confidence, "message": c.message,
                   "would_separate": WOULD_SEPARATE.get(c.code, "")} for c in close]
    message = ("the evidence does not separate " + ", ".join(c.code for c in close)
               + "; see each candidate's evidence and what would tell them apart")
    return [Cause("uncertain", close[0].confidence, {"candidates": candidates}, fix_for("uncertain", framework),
                  message)]


def _explained(symptom: Cause, root: Cause) -> Cause:
    evidence: dict[str, Any] = {**symptom.evidence, "explained_by": root.code}
    confidence = min(symptom.confidence, round(SYMPTOM_CAP * root.confidence, 3))
    return symptom._replace(confidence=confidence, evidence=evidence)


def _dedupe(findings: list[Finding]) -> list[Finding]:
    seen: set[tuple[str, int, str | None]] = set()
    out = []
    for f in findings:
        key = (f.code, f.step, f.where)
        if key not in seen:
            seen.add(key)
            out.append(f)
    return out
