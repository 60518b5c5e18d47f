# lsvr: `make demo` (set-up + the main job on the embedded data), `make test` (lint + every
# test: the CI command), `make test-fast` (the tests not marked slow: the edit loop) and
# `make docs` (docs/CLI.md and docs/CONFIG.md regenerated from the code).
PYTHON ?= python3
VENV ?= .venv
TORCH ?= torch==2.13.0
BIN := $(VENV)/bin
DEMO ?= runs/demo

.PHONY: demo test test-fast lint format install clean gpu-wheels docs chromium

install: $(VENV)/.installed

# The stamp is rebuilt when the package's dependencies change.
$(VENV)/.installed: pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q "$(TORCH)"
	$(BIN)/python -m pip install -q -e ".[dev]"
	touch $@

demo: install
	DEMO=$(DEMO) PATH="$(CURDIR)/$(BIN):$$PATH" bash scripts/demo.sh

lint: install
	$(BIN)/ruff check src tests scripts
	$(BIN)/ruff format --check src tests scripts

format: install
	$(BIN)/ruff format src tests scripts
	$(BIN)/ruff check --fix src tests scripts

test: lint chromium
	$(BIN)/python -m pytest -q

# Debian's chromium, for tests/test_report_browser.py (the report page in a real browser; it fails
# without it): installed with apt-get when missing and this runs as root, else said.
chromium:
	@test -x /usr/bin/chromium || { if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	  apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends chromium; \
	  else echo "make: /usr/bin/chromium is missing and cannot be installed here (needs root and apt-get):" \
	  "install Debian's chromium package, or tests/test_report_browser.py fails" >&2; fi; }

# No process started, nothing over a few seconds (pyproject.toml's `slow` marker).
test-fast: install
	$(BIN)/python -m pytest -q -m "not slow"

# docs/CLI.md and docs/CONFIG.md, generated from the parsers and the config dataclasses;
# tests/test_reference_docs.py fails while either is stale.
docs: install
	$(BIN)/python -m lsvr.reference

# Wheels of what the GPU machine may lack (simplejpeg, pytest and its requirements...), for
# scripts/gpu_check.sh: .whl/, git-ignored; offline, says what is missing (scripts/gpu_wheels.sh).
gpu-wheels:
	PYTHON=$(PYTHON) bash scripts/gpu_wheels.sh

clean:
	rm -rf $(VENV) runs build src/*.egg-info
