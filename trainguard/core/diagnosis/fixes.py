"""The fix for each cause: a one-line summary and snippets for PyTorch and Keras 3.

Each fix ends, when printed, with its entry in docs/causes.md (``cause_doc_link``).
"""
from __future__ import annotations

from trainguard.core.causes import cause_doc_link
from trainguard.core.diagnosis.cause import Fix

__all__ = ["FIXES", "CLIPPED_EXPLODING", "fix_for"]

# code -> (summary, PyTorch snippet, Keras snippet)
FIXES: dict[str, tuple[str, str, str]] = {
    "unscaled_data": (
        "Standardize the inputs (and regression targets) to mean 0, std 1 with statistics of the training set; "
        "invert the target scaling on predictions.",
        """\
x_mean, x_std = x_train.mean(0), x_train.std(0) + 1e-8
y_mean, y_std = y_train.mean(0), y_train.std(0) + 1e-8
x_train, x_val = (x_train - x_mean) / x_std, (x_val - x_mean) / x_std
y_train = (y_train - y_mean) / y_std
# at prediction time: y_pred = model((x - x_mean) / x_std) * y_std + y_mean""",
        """\
norm = keras.layers.Normalization()
norm.adapt(x_train)                                   # inputs: learned mean/std, saved with the model
model = keras.Sequential([norm, *model_layers])
y_mean, y_std = y_train.mean(0), y_train.std(0) + 1e-8
model.fit(x_train, (y_train - y_mean) / y_std, ...)  # predictions: model.predict(x) * y_std + y_mean""",
    ),
    "lr_too_high": (
        "Lower the learning rate (try 10x smaller), or warm it up over the first steps.",
        """\
for group in optimizer.param_groups:
    group["lr"] *= 0.1
# or a warm-up: torch.optim.lr_scheduler.LinearLR(optimizer, start_factor=0.01, total_iters=500)""",
        """\
optimizer = keras.optimizers.SGD(learning_rate=0.1 * old_learning_rate, momentum=0.9)
# or a warm-up: keras.optimizers.schedules.CosineDecay(0.0, decay_steps, warmup_target=lr, warmup_steps=500)""",
    ),
    "lr_too_low": (
        "Raise the learning rate (try 10x larger) until the update-to-weight ratio is near 1e-3.",
        """\
for group in optimizer.param_groups:
    group["lr"] *= 10""",
        """\
optimizer = keras.optimizers.Adam(learning_rate=10 * old_learning_rate)""",
    ),
    "vanishing_gradient": (
        "Use a non-saturating activation (ReLU/GELU) with He initialization in hidden layers, or add "
        "normalization / residual connections; keep sigmoid for the output only.",
        """\
model = nn.Sequential(
    nn.Linear(1, 32), nn.ReLU(),
    nn.Linear(32, 32), nn.ReLU(),
    nn.Linear(32, 1),
)
for m in model.modules():
    if isinstance(m, nn.Linear):
        nn.init.kaiming_uniform_(m.weight, nonlinearity="relu")""",
        """\
model = keras.Sequential([
    keras.layers.Dense(32, activation="relu", kernel_initializer="he_uniform"),
    keras.layers.Dense(32, activation="relu", kernel_initializer="he_uniform"),
    keras.layers.Dense(1),
])""",
    ),
    "exploding_gradient": (
        "Clip the gradient's global norm before each update (and check the data scale and learning rate).",
        """\
loss.backward()
torch.nn.utils.clip_grad_norm_(model.parameters(), max_norm=1.0)
optimizer.step()
# or let trainguard clip adaptively: trainguard.Guard(model, optimizer, policy="safe")""",
        """\
optimizer = keras.optimizers.SGD(learning_rate=0.01, momentum=0.9, global_clipnorm=1.0)""",
    ),
    "batch_size_dependent_loss": (
        "Make the loss independent of the batch size: average once, over the samples of the batch; or drop the "
        "last partial batch.",
        """\
loss = per_sample_loss.sum() / x.shape[0]        # one mean over the batch, not a mean of means
# or: DataLoader(dataset, batch_size=32, shuffle=True, drop_last=True)""",
        """\
def loss_fn(y_true, y_pred):
    return per_sample_loss(y_true, y_pred)    # per sample: Keras averages over the batch itself
# or, with tf.data: dataset.batch(32, drop_remainder=True)""",
    ),
    "adam_epsilon": (
        "Raise Adam's epsilon (1e-8 -> 1e-6 ... 1e-3) or clip the update (StableAdamW-style); trainguard's "
        "adam_guard does both online.",
        """\
optimizer = torch.optim.Adam(model.parameters(), lr=1e-3, eps=1e-6)
# or online: trainguard.Guard(model, optimizer, policy="auto")  # caps the update RMS at 1""",
        """\
optimizer = keras.optimizers.Adam(learning_rate=1e-3, epsilon=1e-6)""",
    ),
    "bad_batch": (
        "Find and fix or drop the offending batch (its step and fingerprint are in the evidence); skip "
        "non-finite steps meanwhile.",
        """\
assert torch.isfinite(x).all() and torch.isfinite(y).all(), "bad batch"
# or skip them online: trainguard.Guard(model, optimizer, policy="safe")""",
        """\
dataset = dataset.filter(lambda x, y: tf.reduce_all(tf.math.is_finite(x)))  # tf.data input pipelines
# or: keras.callbacks.TerminateOnNaN() to stop at the first one""",
    ),
    "bn_inference_mode": (
        "Put the model in training mode for training steps (BatchNorm then uses batch statistics and updates "
        "its running ones); switch to eval mode only to evaluate.",
        """\
model.train()                     # before the training loop (and again after every evaluation)
for x, y in loader:
    ...
model.eval()                      # only around evaluation, inside torch.no_grad()""",
        """\
y_pred = model(x, training=True)   # in custom training loops, on every backend
loss = loss_fn(y, y_pred)""",
    ),
    "dead_relu": (
        "Revive the units: lower the learning rate, use He initialization, or switch to LeakyReLU/GELU.",
        """\
nn.LeakyReLU(negative_slope=0.01)          # in place of nn.ReLU()
nn.init.kaiming_uniform_(layer.weight, nonlinearity="leaky_relu")""",
        """\
keras.layers.Dense(64, activation="leaky_relu", kernel_initializer="he_uniform")""",
    ),
    "saturated_activation": (
        "Keep pre-activations small: normalize inputs, use Xavier/Glorot initialization, add normalization "
        "before sigmoid/tanh, or use ReLU/GELU in hidden layers.",
        """\
nn.Sequential(nn.Linear(64, 64), nn.LayerNorm(64), nn.Tanh())
nn.init.xavier_uniform_(layer.weight)""",
        """\
keras.layers.Dense(64, kernel_initializer="glorot_uniform")
keras.layers.LayerNormalization()
keras.layers.Activation("tanh")""",
    ),
    "overfitting": (
        "Stop at the best validation loss and regularize (weight decay, dropout, more data or augmentation).",
        """\
optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3, weight_decay=1e-2)
# keep the checkpoint with the lowest validation loss and stop after `patience` epochs without improvement""",
        """\
model.fit(..., validation_data=(x_val, y_val),
          callbacks=[keras.callbacks.EarlyStopping(patience=5, restore_best_weights=True)])""",
    ),
    "uncertain": (
        "The evidence does not separate the candidate causes listed in this diagnosis: record what tells them "
        "apart (per-layer statistics every step, the data's scale, activations), or try each candidate's fix "
        "in turn, the most likely first.",
        """\
guard = trainguard.Guard(model, optimizer, preset="full")   # per-layer statistics and activations every step
guard.step(loss, inputs=x, targets=y)                       # the data's scale and the trivial predictor's loss""",
        """\
callback = trainguard.keras.Guard(preset="full")   # per-layer statistics and activations every step""",
    ),
}


# An exploding gradient in a run that already clips: clipping bounded each step and the gradient still grew, so
# the fix is what makes it grow (Pascanu et al. 2013 clip as a safeguard, not a cure).
CLIPPED_EXPLODING: tuple[str, str, str] = (
    "The run already clips the gradient, and it still exploded: clipping bounds the step, not what makes the "
    "gradient grow. Lower the learning rate, check the data's scale and the initialization, and add "
    "normalization (LayerNorm/BatchNorm) or residual connections (gating, for RNNs: LSTM/GRU).",
    """\
for group in optimizer.param_groups:
    group["lr"] *= 0.1
nn.init.orthogonal_(rnn.weight_hh_l0)      # recurrent weights: spectral radius 1, not above
model = nn.Sequential(nn.Linear(d, d), nn.LayerNorm(d), nn.GELU())""",
    """\
optimizer = keras.optimizers.Adam(learning_rate=0.1 * old_learning_rate)
keras.layers.SimpleRNN(units, recurrent_initializer="orthogonal")
keras.layers.LayerNormalization()""",
)


def fix_for(code: str, framework: str = "torch", *, clipped: bool = False) -> Fix:
    """The fix for ``code``; ``clipped``: the run already clips its gradient (no advice to clip)."""
    summary, torch_snippet, keras_snippet = CLIPPED_EXPLODING if clipped and code == "exploding_gradient" \
        else FIXES[code]
    return Fix(summary, torch_snippet, keras_snippet, cause_doc_link(code), framework)
