"""``periodic_spike``: loss spikes that recur with a fixed period, related to the steps per epoch.

Rule: fold the spike steps by a candidate period (the steps per epoch from an epoch column, else the median spacing
of the spikes) and keep the spikes whose phase is within 3% of their circular mean phase; the pattern holds when at
least 3 spikes (4 without an epoch column), covering at least half the cycles of the run (or, with an epoch column,
a third of them when most spikes are on the pattern), share that phase, and chance would put that many of the
run's spikes in that phase window with a probability under 0.1% (Chernoff bound). Spikes at epoch ends point at the last,
smaller batch (a summed loss, a mean over few samples, BatchNorm statistics of a tiny batch); at a fixed place
inside the epoch they point at one bad batch met every epoch (data not shuffled). This is the pattern behind "Why
does my training loss have regular spikes?" (Stack Overflow 2018, spikes every 1390 steps = one epoch).
Without such spikes, the same test on *dips* (the loss far below its trend once per period): a summed loss divided
by the configured batch size reads low on the epoch's last, smaller batch (transformers#6969: "if the batch size
becomes lower for the last step we divide by a wrong number").
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from trainguard.core.findings import Severity
from trainguard.doctor.analysis.causes import batch_size_drop, evidence_round
from trainguard.doctor.analysis.signals import Signals
from trainguard.doctor.findings import DoctorFinding, json_step

__all__ = ["analyse_periodic_spike", "find_period", "find_dip_period", "Period"]

_PHASE_TOLERANCE = 0.03
_CHANCE = 1e-3
_FOLDED_CYCLES, _FOLDED_SHARE, _FOLDED_Z = 8, 0.8, -2.0


@dataclass(frozen=True)
class Period:
    steps: float
    source: str  # "epoch column" or "spike spacing"
    peaks: np.ndarray  # finite indices of the spikes on the pattern
    phase: float  # mean phase of those spikes within the period, 0..1


def find_period(sig: Signals) -> Period | None:
    if "period" in sig.memo:
        return sig.memo["period"]  # type: ignore[return-value]
    sig.memo["period"] = result = _find_period(sig)
    return result


def find_dip_period(sig: Signals) -> Period | None:
    """The same pattern for dips: the loss far *below* its trend once per period."""
    if "dip_period" not in sig.memo:
        sig.memo["dip_period"] = _find_period(sig, sig.dips())
    return sig.memo["dip_period"]  # type: ignore[return-value]


def _find_period(sig: Signals, spikes: list | None = None) -> Period | None:
    dips = spikes is not None
    spikes = sig.spikes(strong=False) if spikes is None else spikes
    if len(spikes) < 3:
        return None
    peaks = np.array([e.peak for e in spikes])
    peak_steps = sig.steps[peaks]
    sampling = float(np.median(np.diff(sig.steps))) if sig.n > 1 else 1.0
    candidates = []
    if sig.steps_per_epoch:
        candidates.append(sig.steps_per_epoch)
    candidates.append((float(np.median(np.diff(peak_steps))), "spike spacing"))
    span = float(sig.steps[-1] - sig.steps[0])
    for period, source in candidates:
        if period < 3 * sampling:
            continue
        angles = 2 * np.pi * np.mod(peak_steps, period) / period
        mean_phase = float(np.angle(np.exp(1j * angles).mean())) / (2 * np.pi) % 1.0
        distance = np.abs((np.mod(peak_steps, period) / period - mean_phase + 0.5) % 1.0 - 0.5)
        tolerance = max(_PHASE_TOLERANCE, 1.5 * sampling / period)
        on = distance <= tolerance
        cycles = span / period
        # Three spikes can line up by chance on their own median spacing; a period given by the epochs cannot,
        # so there three suffice, and when most spikes sit on that phase they may skip some epochs (a small
        # last batch is as often far below the trend as far above it).
        count = int(on.sum())
        if source == "epoch column":
            enough = count >= 3 and (count >= 0.5 * np.floor(cycles) or
                                     (count >= 0.3 * np.floor(cycles) and count >= 0.6 * len(peaks)))
        else:
            enough = count >= 4 and count >= 0.5 * np.floor(cycles)
        # And more of them than chance would put in that phase window (noisy runs have many weak spikes).
        if enough and _chance_bound(len(peaks), count, min(1.0, 2 * tolerance)) <= _CHANCE:
            return Period(period, source, peaks[on], mean_phase)
        if dips and count >= 4 and _folded(sig, period, mean_phase, tolerance):
            return Period(period, source, peaks[on], mean_phase)
    return None


def _folded(sig: Signals, period: float, phase: float, tolerance: float) -> bool:
    """Every cycle, not only those whose dip stood out of the noise: the points at the pattern's phase sit below
    the trend in >= 80% of the run's cycles (>= 8 of them), with a median z <= -2. Noise puts a point below its
    trend half the time: 80% of 8 or more cycles happens by chance with a probability under 5% (binomial), and
    the median z rules out a shallow bias."""
    distance = np.abs((np.mod(sig.steps, period) / period - phase + 0.5) % 1.0 - 0.5)
    at_phase = distance <= tolerance
    cycles = np.floor(sig.steps[at_phase] / period)
    if len(np.unique(cycles)) < _FOLDED_CYCLES:
        return False
    z = sig.z[at_phase]
    by_cycle = np.array([z[cycles == c].min() for c in np.unique(cycles)])
    return bool(np.mean(by_cycle < 0) >= _FOLDED_SHARE and np.median(by_cycle) <= _FOLDED_Z)


def _chance_bound(n: int, k: int, p: float) -> float:
    """Chernoff bound on P(at least k of n uniformly placed spikes land in a window holding a share p)."""
    share = k / n
    if share <= p:
        return 1.0
    if share >= 1.0:
        return p ** n
    kl = share * math.log(share / p) + (1 - share) * math.log((1 - share) / (1 - p))
    return math.exp(-n * kl)


def analyse_periodic_spike(sig: Signals) -> list[DoctorFinding]:
    period, direction = find_period(sig), "spike"
    if period is None:
        period, direction = find_dip_period(sig), "dip"
    if period is None:
        return []
    heights = sig.residual[period.peaks]
    evidence: dict = {"direction": direction,
        "period_steps": evidence_round(period.steps), "period_from": period.source, "spikes": int(len(period.peaks)),
        "spike_steps": [json_step(s) for s in sig.steps[period.peaks][:10]],
        "median_spike_ratio" if sig.log_scale else "median_spike_height":
            evidence_round(float(np.exp(np.median(heights)) if sig.log_scale else np.median(heights))),
    }
    at_epoch_end = _at_epoch_boundaries(sig, period)
    spe = sig.steps_per_epoch
    if spe:
        evidence["steps_per_epoch"] = evidence_round(spe[0])
        evidence["epochs_per_period"] = evidence_round(period.steps / spe[0])
        evidence["at_epoch_boundary_share"] = evidence_round(at_epoch_end)
    else:
        evidence["steps_per_epoch"] = "unknown: no epoch column; an epoch of period_steps steps would explain it"
    batch = batch_size_drop(sig, period.peaks)
    if batch:
        evidence.update(batch)
    if batch and batch["smaller"]:
        pattern, where = "smaller_batch", "on steps with a smaller batch"
    elif spe and at_epoch_end < 0.5 and abs(period.steps / spe[0] - round(period.steps / spe[0])) < 0.05:
        pattern, where = "same_place_each_epoch", "at the same place in every epoch (the same batch each epoch?)"
    elif spe and at_epoch_end < 0.5:
        pattern, where = "not_whole_epochs", "with a period that is not a whole number of epochs"
    else:
        pattern, where = "epoch_end", ("at epoch ends" if spe else "with a fixed period (likely the epoch end)")
    evidence["pattern"] = pattern
    message = (f"{len(period.peaks)} loss {direction}s every {evidence['period_steps']:g} steps, {where}")
    return [DoctorFinding("periodic_spike", Severity.WARNING, float(sig.steps[period.peaks[0]]), "none", evidence,
                          message)]


def _at_epoch_boundaries(sig: Signals, period: Period) -> float:
    """Share of the pattern's spikes within a few steps of the start or end of an epoch."""
    epoch = sig.series.optional("epoch")
    if epoch is None or not sig.steps_per_epoch:
        return 0.0
    ok = np.isfinite(epoch)
    whole = np.floor(epoch[ok] + 1e-9)
    boundaries = sig.series.step[ok][np.flatnonzero(np.diff(whole) > 0) + 1]
    if len(boundaries) == 0:
        return 0.0
    spike_steps = sig.steps[period.peaks]
    right = np.clip(np.searchsorted(boundaries, spike_steps), 0, len(boundaries) - 1)
    left = np.clip(right - 1, 0, len(boundaries) - 1)
    nearest = np.minimum(np.abs(boundaries[right] - spike_steps), np.abs(boundaries[left] - spike_steps))
    sampling = float(np.median(np.diff(sig.steps))) if sig.n > 1 else 1.0
    tolerance = max(0.03 * sig.steps_per_epoch[0], 2 * sampling)
    return float(np.mean(nearest <= tolerance))
