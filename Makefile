# The two commands the README opens with: `make demo` and `make test`.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.ksf-installed
KSF_DATA_DIR ?= $(abspath ../shared/data)
KSF_WEIGHTS_DIR ?= $(abspath ../shared/weights)
export KSF_DATA_DIR KSF_WEIGHTS_DIR

.PHONY: install demo test test-fast test-torch lint bench clean

$(STAMP): setup.cfg pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e ".[dev]"
	touch $(STAMP)

install: $(STAMP)

## The main job on real data (see README).
demo: install
	$(VENV)/bin/ksf demo --data $(KSF_DATA_DIR) --out out/demo

lint: install
	$(VENV)/bin/ruff check .

## The whole suite, ruff, and the layer and model tests again under the JAX backend.
test: lint
	$(PY) -m pytest
	KERAS_BACKEND=jax $(PY) -m pytest tests/layers tests/models

## Layers and models under the PyTorch backend (needs `pip install torch` in the venv; not in CI).
test-torch: install
	KERAS_BACKEND=torch $(PY) -m pytest tests/layers tests/models

test-fast: lint
	$(PY) -m pytest -m "not slow and not large"

bench: install
	for script in bench/[!_]*.py; do $(PY) $$script || exit 1; done

clean:
	rm -rf build dist *.egg-info out .pytest_cache .ruff_cache
