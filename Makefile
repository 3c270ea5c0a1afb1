# Two entry points (see README): `make demo` runs the main job, `make test` runs the tests.
# Each creates .venv and installs what it needs the first time.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed

.PHONY: demo test check-twins venv clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	# CPU build of PyTorch first, so the dependency resolver does not pull a multi-GB CUDA build.
	$(PY) -m pip install -q torch==2.13.0 || $(PY) -m pip install -q torch
	$(PY) -m pip install -q -e ".[dev,plot,interop]"
	touch $(STAMP)

venv: $(STAMP)

# The main job: train the default small GPT on bundled Shakespeare (preset cpu-tiny, a few minutes
# on a laptop CPU; CUDA or Apple MPS when present), then sample from it. runs/demo is the demo's
# own folder and is replaced on every run.
demo: $(STAMP)
	$(PY) train.py --data shakespeare --preset cpu-tiny --out runs/demo --overwrite
	$(PY) sample.py --ckpt runs/demo/ckpt.pt --prompt "ROMEO:" --max-new-tokens 300 --seed 1

# One forward/backward pass of a tiny GPT against its NumPy float64 twin: one row per tensor.
check-twins: $(STAMP)
	$(PY) -m minilm.check_twins

test: $(STAMP)
	$(PY) -m ruff check .
	$(PY) -m pytest

clean:
	rm -rf $(VENV) runs .cache .pytest_cache .hypothesis
