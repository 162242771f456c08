"""A Keras-3 custom loop on returns computed with a percent change: one zero price makes the next return inf, which a
NaN-only cleanup keeps, and the first batch holding it turns the loss NaN for good.

Sources: https://github.com/TorchTrade/torchtrade/issues/398 ("inf reaches the observation: pct_change off a zero
close survives dropna"): a feature column is ``close.pct_change()``; after a candle whose close is 0 the next bar's
change is inf, and the trailing ``dropna()`` removes NaN but not inf, so one enormous value reaches the model with no
error anywhere. The training-side symptom is the one of https://github.com/tensorflow/tensorflow/issues/46145
("Pandas pct_change() function results in nan loss when training"): a Keras model trains fine on the raw frame and
its loss is nan once the features come from ``pct_change()``, although the reporter had dropped the NaN.
Fix (the issue's pull request, https://github.com/TorchTrade/torchtrade/pull/399): after the existing ``dropna()``,
also drop the rows that are non-finite, so the bar after the zero candle goes too; nothing else changes.

Here: a price series of 6,000 bars whose returns are AR(1) (phi 0.6, so the next return is partly predictable), one
malformed candle with close 0 at bar 2,500; percent changes and the NaN-row drop done in numpy with pandas'
arithmetic (pandas is not installed here); windows of the last 8 returns (in percent) predict the next one; Dense
32-32-1 with ReLU, MSE, Adam(1e-3), batch 32, shuffled, 1,500 steps, the loop of keras.io's PyTorch custom-loop
guide on the torch backend. The inf sits in 9 of the 5,991 windows (8 as a feature, 1 as the target). The zero
candle's own change, -100%, is finite and stays in both twins, as it does in the issue.
Measured (unguarded, one thread, ~5.4 s a run; final_loss = MSE on 1,991 windows of a clean series, the same for both
twins; predicting 0 gives 1.59, the noise floor is 1.0): faulty: batch losses 1.25-2.2 until the first batch
holding an inf window (step 28, after a loss of 1.51), nan at that step and every step after, final nan; fixed
1.04 (its last 10% of batch losses average 3.2, raised by the batches holding the -100% return).
"""
from __future__ import annotations

import numpy as np

from benchmarks.corpus.case import Case, Outcome, RunContext
from benchmarks.corpus.faulty._keras_common import (
    close_loop,
    finite_or_nan,
    keras_seeded,
    loop_step,
    tail_mean,
)

CASE = Case(name="keras_loop_torchtrade398_pct_change_inf", kind="faulty", cause="bad_batch",
            framework="keras_loop",
            source="https://github.com/TorchTrade/torchtrade/issues/398 (pct_change off a zero close survives dropna);"
                   " symptom as in https://github.com/tensorflow/tensorflow/issues/46145",
            symptom="the return after a zero-priced candle is inf, dropna() keeps it, the loss turns nan",
            fix="after dropna(), drop the non-finite rows too (torchtrade#399): the bar after the zero candle goes")

BARS, ZERO_BAR, TEST_BARS, WINDOW, STEPS, BATCH = 6000, 2500, 2000, 8, 1500, 32


def _prices(seed: int, bars: int, zero_bar: int | None) -> np.ndarray:
    rng = np.random.default_rng(seed)
    returns = np.empty(bars)
    returns[0] = 0.0
    noise = rng.normal(0, 0.01, bars)
    for t in range(1, bars):
        returns[t] = 0.6 * returns[t - 1] + noise[t]
    close = 100.0 * np.exp(np.cumsum(returns))
    if zero_bar is not None:
        close[zero_bar] = 0.0  # a malformed / halted candle
    return close


def _pct_change(close: np.ndarray) -> np.ndarray:
    """pandas' ``Series.pct_change()``: NaN first, then close[t] / close[t - 1] - 1 (inf after a zero)."""
    with np.errstate(divide="ignore", invalid="ignore"):
        change = close[1:] / close[:-1] - 1.0
    return np.concatenate([[np.nan], change])


def _windows(close: np.ndarray, fixed: bool) -> tuple[np.ndarray, np.ndarray]:
    ret = 100.0 * _pct_change(close)  # percent
    ret = ret[~np.isnan(ret)]  # df.dropna()
    if fixed:
        ret = ret[np.isfinite(ret)]  # and the rows non-finite in any column
    idx = np.arange(WINDOW)[None, :] + np.arange(len(ret) - WINDOW)[:, None]
    x = ret[idx].astype(np.float32)
    y = ret[WINDOW:, None].astype(np.float32)
    return x, y


def run(ctx: RunContext) -> Outcome:
    keras = keras_seeded(0)
    import torch

    x, y = _windows(_prices(1, BARS, ZERO_BAR), ctx.fixed)
    x_test, y_test = _windows(_prices(3, TEST_BARS, None), fixed=True)  # clean bars of another series, the same for both twins
    model = keras.Sequential([keras.Input((WINDOW,)), keras.layers.Dense(32, activation="relu"),
                              keras.layers.Dense(32, activation="relu"), keras.layers.Dense(1)])
    loss_fn = keras.losses.MeanSquaredError()
    optimizer = ctx.keras_optimizer(keras.optimizers.Adam(1e-3), model)
    rng = np.random.default_rng(2)
    order = rng.permutation(len(x))
    losses, pos = [], 0
    for step in range(STEPS):
        if pos + BATCH > len(order):
            order, pos = rng.permutation(len(x)), 0
        idx = order[pos:pos + BATCH]
        pos += BATCH
        xb, yb = torch.from_numpy(x[idx]), torch.from_numpy(y[idx])
        loss = loss_fn(yb, model(xb, training=True))
        loop_step(model, optimizer, loss, ctx.guarded, inputs=xb, targets=yb)
        losses.append(float(loss.detach()))
        ctx.log_scalar(step, loss=losses[-1])
    close_loop(optimizer, ctx.guarded)
    with torch.no_grad():
        test_loss = finite_or_nan(loss_fn(torch.from_numpy(y_test), model(torch.from_numpy(x_test))))
    bad = np.flatnonzero(~np.isfinite(np.asarray(losses)))
    return ctx.outcome(final_loss=test_loss, model=model, steps=STEPS, train_tail=tail_mean(losses),
                       first_nonfinite_step=int(bad[0]) if len(bad) else -1,
                       inf_windows=int((~np.isfinite(x).all(1) | ~np.isfinite(y[:, 0])).sum()))
