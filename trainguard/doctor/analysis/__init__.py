"""Whole-series analyses of a finished run, one module per finding code, each a pure function of
:class:`~trainguard.doctor.analysis.signals.Signals` returning doctor findings."""
from __future__ import annotations

import numpy as np

from trainguard.doctor.analysis.divergence import analyse_divergence
from trainguard.doctor.analysis.large_lr import analyse_large_lr
from trainguard.doctor.analysis.loss_scale import analyse_loss_scale
from trainguard.doctor.analysis.loss_spike import analyse_loss_spike
from trainguard.doctor.analysis.non_finite import analyse_non_finite
from trainguard.doctor.analysis.oscillation import analyse_oscillation
from trainguard.doctor.analysis.overfitting import analyse_overfitting
from trainguard.doctor.analysis.parse import analyse_parse
from trainguard.doctor.analysis.periodic_spike import analyse_periodic_spike
from trainguard.doctor.analysis.plateau import analyse_plateau
from trainguard.doctor.analysis.signals import Signals
from trainguard.doctor.findings import DoctorFinding
from trainguard.doctor.series import RunSeries

__all__ = ["ANALYSES", "analyse_series", "Signals"]

ANALYSES = (analyse_parse, analyse_non_finite, analyse_loss_scale, analyse_divergence, analyse_periodic_spike,
            analyse_loss_spike, analyse_oscillation, analyse_plateau, analyse_overfitting, analyse_large_lr)


def analyse_series(series: RunSeries) -> list[DoctorFinding]:
    found: list[DoctorFinding] = []
    # Logs hold extreme values (1e38, inf); numpy's overflow warnings would only clutter the report.
    with np.errstate(all="ignore"):
        sig = Signals(series)
        for analysis in ANALYSES:
            if sig.n or analysis in (analyse_parse, analyse_non_finite):
                found.extend(analysis(sig))
    return found
