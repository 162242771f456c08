"""The same Keras tests on the JAX backend, in a subprocess (a process has one Keras backend), where jax is
installed; skipped otherwise. jax is not part of the default set-up; CI runs the torch backend."""
from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import pytest

HERE = Path(__file__).parent


@pytest.mark.skipif(importlib.util.find_spec("jax") is None, reason="jax is not installed")
@pytest.mark.skipif(os.environ.get("KERAS_BACKEND") == "jax", reason="already the JAX run")
def test_keras_tests_pass_on_jax():
    env = dict(os.environ, KERAS_BACKEND="jax")
    tests = sorted(str(p) for p in HERE.glob("test_keras_*.py") if p.name != Path(__file__).name)
    done = subprocess.run([sys.executable, "-m", "pytest", "-q", "-x", "-p", "no:cacheprovider",
                           "-p", "no:warnings", *tests], cwd=HERE.parent.parent, env=env,
                          capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-2000:]
    assert " passed" in done.stdout
