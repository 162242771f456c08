"""``overfitting``: the held-out loss climbs away from its best while the training loss keeps falling, and at the
severity its harm deserves.

Input: the run's :class:`~trainguard.core.validation.Validation` records, one per evaluation, in order (the live
session feeds each as it is recorded; the doctor replays the evaluation rows of a log). Each carries the training
loss's level at that evaluation (``train_loss``).

Rule, after Prechelt 1998 ("Early stopping - but when?", in *Neural Networks: Tricks of the Trade*, LNCS 1524):
his generalization loss GL(t) = E_va(t) / E_opt(t) - 1, the validation loss relative to its best so far, with
training still progressing (his P_k > 0: the training loss still falls), and his UP criterion, a rise over
successive evaluations rather than one bad one. The loss has overfit when, after at least ``min_evaluations`` (5):

* at least ``after_best`` (3) evaluations followed the best one, and the loss rose in most of them
  (``rising_share``, 60%): a sustained climb, not a wobble;
* GL of the last evaluation is at least ``rise`` (10%) and GL of the median of the last three at least
  ``recent_rise`` (3%): far from the best, and not by one outlier;
* the training loss now is below its level at the best evaluation: the model keeps fitting the training data.

Severity means harm (docs/severity.md). A rising loss alone can be harmless: a classifier growing over-confident
on the examples it gets wrong raises the held-out loss while its accuracy holds (the healthy Keras recipes of the
corpus: validation loss 14-29% above its best, accuracy within 0.7% of its best). So when metrics are recorded
whose direction the name tells (accuracy, AUC, F1... higher is better; error, MAE, perplexity... lower is better),
the finding is a WARNING only when every one of them has also degraded: its last value and the median of its last
three worse than its best by more than ``metric_drop`` (2%, relative); else INFO (noteworthy, the run is fine).
Without such a metric the loss is all that measures the held-out harm: WARNING.

Calibration on the healthy dev corpus (its six runs that validate): with their metrics ignored, the sustained-rise
conditions keep the four whose loss only wobbles silent even at ``rise`` 3% (a 3x margin under 10%); the two
whose loss does climb (step decay, text Conv1D: 14-29% above the best) keep their accuracy within 0.7% of its best
(3x under 2%; 1.0% is the largest drop of any healthy dev run). The three dev overfitting runs reach 15-30%.

One finding per episode, at onset and on an escalation (INFO -> WARNING); a new best loss ends the episode.
A non-finite or missing loss is skipped.

>>> from trainguard.core.validation import Validation
>>> det = overfitting()
>>> state, found = det.init(), ()
>>> for i, (val, train) in enumerate([(1.0, 2.0), (0.8, 1.5), (0.7, 1.2), (0.75, 1.0), (0.8, 0.9), (0.85, 0.8)]):
...     found, state = det.update(Validation(step=100 * i, loss=val, train_loss=train), state)
>>> found[0].code, found[0].severity.name, found[0].step
('overfitting', 'WARNING', 500)
"""
from __future__ import annotations

import math
import re
import statistics
from typing import NamedTuple

from trainguard.core.detector import Detector
from trainguard.core.findings import Finding, Severity
from trainguard.core.validation import Validation

__all__ = ["overfitting", "OverfittingState", "metric_direction"]

RECENT = 3  # evaluations in the "recent" median


class MetricTrack(NamedTuple):
    name: str
    higher_is_better: bool
    best: float
    recent: tuple[float, ...]  # the last RECENT values


class OverfittingState(NamedTuple):
    evaluations: int  # finite losses seen
    best_loss: float
    best_step: int
    train_at_best: float  # the training loss's level at the best evaluation (NaN: unknown)
    after_best: int  # evaluations since the best
    rises: int  # of those, how many were above the evaluation before
    last_loss: float
    recent: tuple[float, ...]  # the last RECENT losses
    metrics: tuple[MetricTrack, ...]  # the metrics whose direction is known, in the order first seen
    reported: int  # the severity reported since the best (0: none)


_WORDS = re.compile(r"[^a-z0-9]+")
_HIGHER = ("acc", "auc", "f1", "fbeta", "precision", "recall", "iou", "dice", "bleu", "rouge", "map", "r2",
           "score", "kappa", "matthews", "correct")
_LOWER = ("loss", "error", "err", "mae", "mse", "rmse", "mape", "msle", "perplexity", "ppl", "wer", "cer",
          "crossentropy", "hinge", "logcosh", "kld", "nll")


def metric_direction(name: str) -> bool | None:
    """True when a higher value is better (accuracy, AUC, F1, precision, recall, IoU, BLEU...), False when lower
    is (an error, MAE, MSE, perplexity, a loss), None when the name does not say: the inference Keras'
    ``EarlyStopping(mode="auto")`` makes from a metric's name, with the names of Keras, HF ``evaluate`` and
    torchmetrics. A lower-is-better word wins (``"mean_absolute_error"``, ``"top_k_error"``)."""
    words = [w for w in _WORDS.split(name.lower()) if w]
    if any(w.startswith(_LOWER) for w in words):
        return False
    if any(w.startswith(_HIGHER) for w in words):
        return True
    return None


def overfitting(min_evaluations: int = 5, after_best: int = 3, rising_share: float = 0.6, rise: float = 0.10,
                recent_rise: float = 0.03, metric_drop: float = 0.02) -> Detector:
    def init() -> OverfittingState:
        return OverfittingState(0, math.inf, -1, math.nan, 0, 0, math.nan, (), (), 0)

    def update(record: Validation, state: OverfittingState):
        loss = record.loss
        if loss is None or not math.isfinite(loss):
            return (), state
        metrics = _track(state.metrics, record.metrics)
        train = record.train_loss if record.train_loss is not None and math.isfinite(record.train_loss) else math.nan
        recent = (state.recent + (loss,))[-RECENT:]
        if loss < state.best_loss:  # a new best ends any episode
            return (), OverfittingState(state.evaluations + 1, loss, record.step, train, 0, 0, loss, recent, metrics, 0)
        state = state._replace(evaluations=state.evaluations + 1, after_best=state.after_best + 1,
                               rises=state.rises + (loss > state.last_loss), last_loss=loss, recent=recent,
                               metrics=metrics)
        scale = abs(state.best_loss) or 1.0
        gl, recent_gl = (loss - state.best_loss) / scale, (statistics.median(recent) - state.best_loss) / scale
        if (state.evaluations < min_evaluations or state.after_best < after_best
                or state.rises < rising_share * state.after_best or gl < rise or recent_gl < recent_rise
                or not train < state.train_at_best):
            return (), state
        held = [m.name for m in metrics if not _degraded(m, metric_drop)]
        severity = Severity.INFO if held else Severity.WARNING
        if severity <= state.reported:
            return (), state
        state = state._replace(reported=int(severity))
        evidence = {"best_val_loss": state.best_loss, "best_step": state.best_step, "last_val_loss": loss,
                    "val_rise": gl, "recent_val_rise": recent_gl, "evaluations_after_best": state.after_best,
                    "train_loss_at_best": state.train_at_best, "train_loss_now": train,
                    "metrics": {m.name: {"best": m.best, "recent": statistics.median(m.recent),
                                         "higher_is_better": m.higher_is_better} for m in metrics}}
        message = (f"validation loss {loss:.4g} is {gl:.0%} above its best {state.best_loss:.4g} (step "
                   f"{state.best_step}) after {state.after_best} evaluations, while the training loss fell from "
                   f"{state.train_at_best:.4g} to {train:.4g}")
        if held:
            evidence["metrics_held"] = held
            message += f"; {', '.join(held)} still near its best: the held-out predictions are not worse"
        elif metrics:
            message += f"; {', '.join(m.name for m in metrics)} degraded too"
        return (Finding("overfitting", severity, record.step, None, evidence, message),), state

    return Detector("overfitting", init, update)


def _track(tracks: tuple[MetricTrack, ...], values: dict[str, float]) -> tuple[MetricTrack, ...]:
    by_name = {t.name: t for t in tracks}
    for name, value in values.items():
        if value is None or not math.isfinite(value):
            continue
        track = by_name.get(name)
        if track is None:
            direction = metric_direction(name)
            if direction is None:
                continue
            track = MetricTrack(name, direction, value, ())
        better = value > track.best if track.higher_is_better else value < track.best
        by_name[name] = track._replace(best=value if better else track.best, recent=(track.recent + (value,))[-RECENT:])
    return tuple(by_name.values())


def _degraded(track: MetricTrack, drop: float) -> bool:
    """Worse than its best by more than ``drop``, both now and over the last evaluations (a metric still
    climbing to a new best is not degraded, though its recent median lags behind it)."""
    margin = drop * (abs(track.best) or 1.0)
    sign = 1.0 if track.higher_is_better else -1.0
    return all(sign * (track.best - value) > margin for value in (track.recent[-1], statistics.median(track.recent)))
