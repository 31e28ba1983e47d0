# The two commands: `make demo` and `make test`. Both work on a fresh machine with python3 and make.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
BASE   := $(VENV)/.installed-base
STAMP  := $(VENV)/.installed

# sslyze pins its dependencies (pydantic, nassl, cryptography), so it lives in a virtual environment of its own.
SSLYZE_VENV    := .pytest_cache/sslyze
SSLYZE         := $(SSLYZE_VENV)/bin/sslyze
SSLYZE_VERSION := 6.3.1

.PHONY: demo test lint typecheck pytest scanners soak fuzz bench clean

# The demo needs tlskit alone; the tests also need the dev tools and the libraries the examples use.
$(BASE): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e .
	touch $(BASE)

$(STAMP): $(BASE)
	$(PY) -m pip install -q -e '.[dev,examples]'
	touch $(STAMP)

demo: $(BASE)
	$(VENV)/bin/tlskit demo

test: $(STAMP) lint typecheck pytest

lint: $(STAMP)
	$(VENV)/bin/ruff check src tests bench examples
	$(VENV)/bin/ruff format --check src tests bench examples

typecheck: $(STAMP)
	$(VENV)/bin/mypy

pytest: $(STAMP) $(SSLYZE)
	$(PY) -m pytest -q $(PYTEST_ARGS)

$(SSLYZE):
	$(PYTHON) -m venv $(SSLYZE_VENV)
	$(SSLYZE_VENV)/bin/python -m pip install -q 'sslyze==$(SSLYZE_VERSION)'

scanners: $(SSLYZE)

# 100,000 sequential connections through one server (make test runs 20,000 of them).
soak: $(STAMP)
	TLSKIT_SOAK_CONNECTIONS=100000 $(PY) -m pytest -q -m soak $(PYTEST_ARGS)

# The fuzz targets with a long budget (make test gives each a few seconds).
fuzz: $(STAMP)
	TLSKIT_FUZZ=long $(PY) -m pytest -q tests/test_fuzz.py $(PYTEST_ARGS)

bench: $(STAMP)
	$(PY) bench/run.py

clean:
	rm -rf $(VENV) build *.egg-info src/*.egg-info .pytest_cache .mypy_cache .ruff_cache
