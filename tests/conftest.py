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

try:
    from hypothesis import settings
except ImportError:
    settings = None

if settings is not None:
    # CI draws the same examples on every run (a property test must not pass or fail by the draw: the healthy
    # generators' known false-alarm rate, docs/severity.md, is not zero); a developer's run explores new ones.
    settings.register_profile("ci", derandomize=True, database=None)
    if os.environ.get("CI"):
        settings.load_profile("ci")
