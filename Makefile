# All set-up happens here: `make demo` and `make test` build the venv on first use.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
EXTRAS := torch,keras,tensorflow,jax,tensorboard,dev,lightning,hf

.PHONY: demo test bench bench-diagnosis clean

$(VENV)/.installed: pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -c constraints.txt -e '.[$(EXTRAS)]'
	touch $@

demo: $(VENV)/.installed
	$(VENV)/bin/trainguard demo

# The doctor's HTML report is checked in headless Chromium (Debian's package); installed only when missing
# and only where apt-get can run (root, as in CI). Elsewhere that one test skips and says why.
$(VENV)/.chromium: $(VENV)/.installed
	command -v chromium >/dev/null 2>&1 || { [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1 && \
		apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q chromium; } || \
		echo "chromium not installed: the HTML browser test will skip"
	touch $@

# pyflakes-class checks first (unused imports and variables, undefined names), then the suite (its Keras tests on
# the torch backend), then the Keras tests again on TensorFlow and on JAX: Keras reads KERAS_BACKEND at import,
# so each backend runs in its own pytest process.
test: $(VENV)/.installed $(VENV)/.chromium
	$(VENV)/bin/ruff check --select F trainguard tests benchmarks
	$(PY) -m pytest -q -n 2
	KERAS_BACKEND=tensorflow $(PY) -m pytest -q -n 2 tests/keras
	KERAS_BACKEND=jax $(PY) -m pytest -q -n 2 tests/keras

# The benchmarks also compare the doctor with losslint: the `bench` extra installs it.
$(VENV)/.bench: $(VENV)/.installed
	$(PY) -m pip install -q -c constraints.txt -e '.[$(EXTRAS),bench]'
	touch $@

bench: $(VENV)/.bench
	$(PY) -m benchmarks.run

# The diagnosis corpus alone, both parts (docs/corpus.md).
bench-diagnosis: $(VENV)/.bench
	$(PY) -m benchmarks.diagnosis --part all

clean:
	rm -rf $(VENV) build *.egg-info
