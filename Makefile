# crm-bridge front door. `make test` on a fresh clone builds the virtualenv and runs every check.
SHELL := /bin/bash
.DEFAULT_GOAL := help

VENV := .venv
BIN := $(VENV)/bin
# Python 3.13 (what Lambda runs): pyenv's shim honours .python-version; any python3.13 on PATH works.
PYTHON313 ?= $(shell command -v python3.13 2>/dev/null)
STAMP := $(VENV)/.installed

.PHONY: help venv lint types unit test clean

help: ## list the targets
	@grep -hE '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-12s %s\n", $$1, $$2}'

$(STAMP): pyproject.toml layers/shared/requirements.txt
	@if [ -z "$(PYTHON313)" ] || ! "$(PYTHON313)" -c 'import sys; sys.exit(sys.version_info[:2] != (3, 13))' 2>/dev/null; then \
		echo "error: Python 3.13 is required (Lambda runs python3.13) but no working python3.13 was found." >&2; \
		echo "       Install it (e.g. 'pyenv install 3.13') or run: make PYTHON313=/path/to/python3.13 ..." >&2; \
		exit 1; \
	fi
	@[ -x $(BIN)/python ] || "$(PYTHON313)" -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check --upgrade pip
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -c layers/shared/requirements.txt -e '.[dev]'
	@touch $(STAMP)

venv: $(STAMP) ## create/refresh the virtualenv in .venv

lint: $(STAMP) ## ruff: style and common bugs
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

types: $(STAMP) ## mypy (strict on the shared layer)
	$(BIN)/mypy

unit: $(STAMP) ## the test suite only
	$(BIN)/pytest -q

test: lint types unit ## every check: lint, types, the whole test suite

clean: ## remove the virtualenv and caches
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache .aws-sam
