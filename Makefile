# Two entry points (see README): `make demo` runs the main job, `make test` runs the tests.
# Each creates .venv and installs what it needs the first time.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed

.PHONY: demo test venv clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	# CPU build of PyTorch first, so the dependency resolver does not pull a multi-GB CUDA build.
	$(PY) -m pip install -q torch==2.13.0 || $(PY) -m pip install -q torch
	$(PY) -m pip install -q -e ".[dev]"
	touch $(STAMP)

venv: $(STAMP)

demo: $(STAMP)
	$(PY) -m minilm.demo

test: $(STAMP)
	$(PY) -m pytest

clean:
	rm -rf $(VENV) runs .cache .pytest_cache .hypothesis
