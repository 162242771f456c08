"""``trainguard doctor``: read the logs of finished runs (CSV, JSONL, TensorBoard, Hugging Face
``trainer_state.json``, trainguard run logs) and say what went wrong, why, and what to change.

>>> from trainguard.doctor import diagnose_file          # doctest: +SKIP
>>> result = diagnose_file(Path("metrics.csv"))           # doctest: +SKIP
>>> [(f.code, f.cause) for f in result.findings]          # doctest: +SKIP
"""
from __future__ import annotations

from trainguard.doctor.diagnose import RunDiagnosis, diagnose_file, diagnose_series
from trainguard.doctor.findings import CODES, DoctorFinding
from trainguard.doctor.readers import find_logs, read_run
from trainguard.doctor.series import ReadError, RunSeries

__all__ = ["RunDiagnosis", "diagnose_file", "diagnose_series", "DoctorFinding", "CODES", "find_logs", "read_run",
           "ReadError", "RunSeries"]
