import os

# Keras runs on its torch backend in our test set-up; set before any test imports keras.
os.environ.setdefault("KERAS_BACKEND", "torch")

try:
    import torch
except ImportError:  # the core tests run without torch
    torch = None

if torch is not None:
    # Two cores, two xdist workers: one intra-op thread each keeps runs fast and deterministic.
    torch.set_num_threads(1)
