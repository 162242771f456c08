"""The measurements every whole-series analysis shares, computed once per run in O(n) numpy.

The loss is read on a log scale when it is positive throughout (a spike is then a ratio to the trend, whatever
the loss's units), else on its own scale. The trend is the median of consecutive blocks, interpolated between
block centres: a median ignores a spike that fills less than half a block, unlike a moving mean. The local
noise is the scaled MAD of the residuals over wider blocks (Rousseeuw & Croux 1993, as in
:mod:`trainguard.core.window`), so a fast early drop or a noisy phase raises the bar locally.
"""
from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

import numpy as np

from trainguard.doctor.series import RunSeries

__all__ = ["Signals", "Episode", "block_trend", "block_scale", "episodes"]

MAD_TO_SIGMA = 1.4826


@dataclass(frozen=True)
class Episode:
    """A run of consecutive outlying points (indices into the finite points)."""

    start: int
    end: int  # inclusive
    peak: int
    height: float  # residual at the peak (log ratio on a log scale)


def block_trend(y: np.ndarray, block: int) -> np.ndarray:
    """Median of each block of ``block`` points, linearly interpolated between block centres."""
    n = len(y)
    if n == 0:
        return y.copy()
    block = max(1, min(block, n))
    full = n // block
    medians = list(np.median(y[: full * block].reshape(full, block), axis=1)) if full else []
    centres = list(np.arange(full) * block + (block - 1) / 2.0)
    if full * block < n:
        medians.append(float(np.median(y[full * block:])))
        centres.append((full * block + n - 1) / 2.0)
    return np.interp(np.arange(n, dtype=np.float64), np.asarray(centres), np.asarray(medians))


def block_scale(residual: np.ndarray, block: int) -> np.ndarray:
    """Local robust noise: scaled MAD of the residuals per block, interpolated, floored at a fifth of the
    run's median noise so one very quiet stretch does not make every wiggle in it an outlier."""
    scale = MAD_TO_SIGMA * block_trend(np.abs(residual), block)
    typical = float(np.median(scale)) if len(scale) else 0.0
    return np.maximum(scale, max(0.2 * typical, 1e-6))


def episodes(mask: np.ndarray, height: np.ndarray, max_gap: int = 1) -> list[Episode]:
    """Groups True points closer than ``max_gap + 1`` into episodes."""
    idx = np.flatnonzero(mask)
    if len(idx) == 0:
        return []
    breaks = np.flatnonzero(np.diff(idx) > max_gap + 1)
    starts = np.concatenate([[0], breaks + 1])
    ends = np.concatenate([breaks, [len(idx) - 1]])
    out = []
    for s, e in zip(starts, ends):
        members = idx[s:e + 1]
        peak = int(members[np.argmax(height[members])])
        out.append(Episode(int(members[0]), int(members[-1]), peak, float(height[peak])))
    return out


class Signals:
    """Derived views of one run, computed lazily and cached."""

    def __init__(self, series: RunSeries):
        self.series = series
        finite = np.isfinite(series.loss)
        self.finite_idx = np.flatnonzero(finite)  # positions in the series of the finite losses
        values = series.loss[finite]
        self.log_scale = bool(len(values)) and bool(np.all(values > 0))
        self.y = np.log(values) if self.log_scale else values.astype(np.float64)
        self.steps = series.step[finite]
        n = len(self.y)
        self.block = int(np.clip(n // 40, 5, 50))
        self.memo: dict[str, object] = {}  # results one analysis computes and another reuses

    @property
    def n(self) -> int:
        return len(self.y)

    @cached_property
    def trend(self) -> np.ndarray:
        return block_trend(self.y, self.block)

    @cached_property
    def residual(self) -> np.ndarray:
        return self.y - self.trend

    @cached_property
    def scale(self) -> np.ndarray:
        return block_scale(self.residual, 4 * self.block)

    @cached_property
    def z(self) -> np.ndarray:
        return self.residual / self.scale

    @cached_property
    def level(self) -> np.ndarray:
        """A coarse trend (about 20 blocks) for the run's overall course."""
        return block_trend(self.y, max(3, self.n // 20))

    def spikes(self, strong: bool) -> list[Episode]:
        """Episodes of points far above the trend. Strong: z >= 6 and 1.5x the trend (log scale) or z >= 8;
        weak (candidates for a periodic pattern): z >= 4 and 1.3x, or z >= 6."""
        key = f"spikes:{strong}"
        if key not in self.memo:
            if self.n < 20:
                self.memo[key] = []
            else:
                if self.log_scale:
                    z_min, ratio = (6.0, 1.5) if strong else (4.0, 1.3)
                    mask = (self.z >= z_min) & (self.residual >= np.log(ratio))
                    rise = np.log(ratio)
                else:
                    z_min = 8.0 if strong else 6.0
                    mask = self.z >= z_min
                    rise = z_min * self.scale
                self.memo[key] = [e for e in episodes(mask, self.residual) if self._rose_into(e, rise)]
        return self.memo[key]  # type: ignore[return-value]

    def _rose_into(self, episode: Episode, rise) -> bool:
        """A spike is a jump up from the points just before it and back down to the points just after it (their
        medians, up to a block of them each side), by as much as it stands above the trend. The first points of a
        run, and those of a fast first descent, stand above a block-median trend that lags the descent, and the
        last points of a climb above one that lags the climb: neither jumped up and came back (a coarse log's
        first row is the mean of the run's highest losses)."""
        before = self.y[max(0, episode.start - self.block):episode.start]
        after = self.y[episode.end + 1:episode.end + 1 + self.block]
        if len(before) == 0 or len(after) == 0:
            return False
        needed = float(rise[episode.peak]) if isinstance(rise, np.ndarray) else float(rise)
        peak = float(self.y[episode.peak])
        return peak - float(np.median(before)) >= needed and peak - float(np.median(after)) >= needed

    def dips(self) -> list[Episode]:
        """Episodes of points far below the trend (candidates for a periodic pattern, as weak spikes mirrored:
        z <= -4 and below 1/1.3x the trend on a log scale, or z <= -6); ``height`` is the depth."""
        if "dips" not in self.memo:
            if self.n < 20:
                self.memo["dips"] = []
            else:
                mask = ((self.z <= -4.0) & (self.residual <= -np.log(1.3))) if self.log_scale else self.z <= -6.0
                self.memo["dips"] = episodes(mask, -self.residual)
        return self.memo["dips"]  # type: ignore[return-value]

    def loss_at(self, i: int) -> float:
        """The loss (original units) of the trend at finite index ``i``."""
        v = float(self.level[i])
        return float(np.exp(v)) if self.log_scale else v

    def column_at(self, role: str, lo: int, hi: int) -> np.ndarray:
        """Finite values of an optional column between finite indices ``lo`` and ``hi`` (exclusive)."""
        values = self.series.optional(role)
        if values is None:
            return np.empty(0)
        lo_pos = self.finite_idx[max(0, lo)] if self.n else 0
        hi_pos = self.finite_idx[min(hi, self.n) - 1] + 1 if self.n and hi > 0 else 0
        chunk = values[lo_pos:hi_pos]
        return chunk[np.isfinite(chunk)]

    @cached_property
    def steps_per_epoch(self) -> tuple[float, str] | None:
        """Steps per epoch from an epoch column (integer or fractional epochs), with where it came from."""
        epoch = self.series.optional("epoch")
        if epoch is None or self.series.columns.get("step") == self.series.columns.get("epoch"):
            return None
        ok = np.isfinite(epoch)
        e, s = epoch[ok], self.series.step[ok]
        if len(e) < 2 or e[-1] - e[0] < 1:
            return None
        if np.all(e == np.round(e)):
            # Integer epochs: the steps of each epoch change.
            changes = np.flatnonzero(np.diff(e) > 0) + 1
            if len(changes) >= 2:
                return float(np.median(np.diff(s[changes]))), "epoch column"
        return float((s[-1] - s[0]) / (e[-1] - e[0])), "epoch column"
