"""Clues in a log that point at a cause: an LR that rose, a gradient-norm run-up, a calm phase whose
gradient norms shrank, a smaller batch. Each helper returns its numbers (for the evidence) or None when the log
lacks the column."""
from __future__ import annotations

import numpy as np

from trainguard.doctor.analysis.signals import Signals

__all__ = ["lr_change", "grad_run_up", "calm_shrinking_phase", "batch_size_drop", "evidence_round"]


def evidence_round(x: float) -> float:
    return float(f"{x:.4g}")


def lr_change(sig: Signals, onset: int, lookback: int) -> dict | None:
    """LR at the onset relative to the LR ``lookback`` points earlier; None without an LR column."""
    before = sig.column_at("lr", onset - lookback, onset - lookback + max(1, lookback // 5))
    at = sig.column_at("lr", onset - max(1, lookback // 5), onset + 1)
    if len(before) == 0 or len(at) == 0 or np.median(before) <= 0:
        return None
    ratio = float(np.median(at) / np.median(before))
    return {"lr_before": evidence_round(float(np.median(before))), "lr_at_onset": evidence_round(float(np.median(at))),
            "lr_ratio": evidence_round(ratio), "lr_rising": ratio >= 1.2}


def grad_run_up(sig: Signals, peak: int, width: int = 10) -> dict | None:
    """Median gradient norm just before ``peak`` relative to the stretch before that; None without one."""
    recent = sig.column_at("grad_norm", peak - width, peak)
    earlier = sig.column_at("grad_norm", peak - 5 * width, peak - width)
    if len(recent) < 2 or len(earlier) < 2 or np.median(earlier) <= 0:
        return None
    ratio = float(np.median(recent) / np.median(earlier))
    return {"grad_norm_before": evidence_round(float(np.median(recent))), "grad_norm_run_up": evidence_round(ratio),
            "run_up": ratio >= 3.0}


def calm_shrinking_phase(sig: Signals, onset: int) -> dict | None:
    """Was the run calm for long before ``onset`` (the loss level never rising more than 10% above its running
    best), with gradient norms shrinking? Adam's second moment then shrinks too, until epsilon no longer bounds
    the update. None when the phase before is too short."""
    onset = min(onset, sig.n - 1)
    if onset < max(20, 0.3 * sig.n):
        return None
    # End the calm phase a little before the onset: the onset is where the climb is already under way.
    calm = sig.level[onset // 2:max(onset // 2 + 2, onset - max(2, sig.n // 20))]
    if sig.log_scale:
        worst_rise = float(np.max(calm - np.minimum.accumulate(calm)))
    else:
        worst_rise = float(np.max(calm - np.minimum.accumulate(calm))) / max(float(np.abs(calm).mean()), 1e-12)
    norms_early = sig.column_at("grad_norm", onset // 4, onset // 2)
    norms_late = sig.column_at("grad_norm", onset - max(2, onset // 8), onset)
    out: dict = {"calm_steps": int(sig.steps[onset] - sig.steps[onset // 2]),
                 "calm_worst_rise": evidence_round(worst_rise), "calm": worst_rise <= 0.1}
    if len(norms_early) >= 2 and len(norms_late) >= 2 and np.median(norms_early) > 0:
        shrink = float(np.median(norms_late) / np.median(norms_early))
        out["grad_norm_shrink"] = evidence_round(shrink)
        out["shrinking"] = shrink <= 0.2
    return out


def batch_size_drop(sig: Signals, points: np.ndarray) -> dict | None:
    """Batch size at the given finite indices against the run's usual batch size; None without a column."""
    values = sig.series.optional("batch_size")
    if values is None or len(points) == 0:
        return None
    at = values[sig.finite_idx[points]]
    at = at[np.isfinite(at)]
    usual = float(np.nanmedian(values))
    if len(at) == 0 or usual <= 0:
        return None
    smaller = float(np.mean(at < usual))
    return {"usual_batch_size": evidence_round(usual), "batch_size_at_spikes": evidence_round(float(np.median(at))),
            "share_smaller_batch": evidence_round(smaller), "smaller": smaller >= 0.5}
