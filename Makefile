# The README's two commands, `make run` and `make test`, work on a fresh clone with only Python 3.11+
# and make: the virtual environment is created and (re)installed whenever pyproject.toml changes.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
FLASK := $(BIN)/flask --app wsgi
PYTEST_ARGS ?=
# Test processes (pytest-xdist; 0 runs them in this one). A file's tests stay in one process, so its
# module-scoped deployments are made once.
PYTEST_WORKERS ?= 2
BENCH_ARGS ?=
# The dashboard's front-end libraries: installed from npm (csms/dashboard/package-lock.json), copied
# into its static folder by package.json's `vendor` script.
DASHBOARD := csms/dashboard
VENDOR := $(DASHBOARD)/static/vendor

.PHONY: help run test lint format bench clean assets
.DEFAULT_GOAL := help

help:  ## list the targets
	@grep -E '^[a-z]+:.*## ' $(MAKEFILE_LIST) | sed -E 's/^([a-z]+):.*## /  make \1\t/' | expand -t 16

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

$(VENV)/.installed: pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e .
	touch $@

$(VENV)/.installed-dev: pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $@ $(VENV)/.installed

$(VENDOR)/.installed: $(DASHBOARD)/package.json $(DASHBOARD)/package-lock.json
	@command -v npm >/dev/null || { echo "make: npm (Node.js 18+) is needed for the dashboard's front-end libraries; install it (Debian: apt-get install nodejs npm) and run make again" >&2; exit 1; }
	npm ci --prefix $(DASHBOARD) --no-audit --no-fund --ignore-scripts --loglevel=error
	npm run --prefix $(DASHBOARD) --silent vendor
	touch $@

assets: $(VENDOR)/.installed  ## install the dashboard's front-end libraries from npm

run: $(VENV)/.installed $(VENDOR)/.installed  ## embedded mode on http://127.0.0.1:8080 (installs, migrates, seeds; Ctrl-C stops)
	$(FLASK) db upgrade
	$(FLASK) seed-demo
	$(BIN)/python wsgi.py

test: $(VENV)/.installed-dev $(VENDOR)/.installed  ## the whole test suite (PYTEST_WORKERS, PYTEST_ARGS=... to choose)
	$(BIN)/python -m pytest -n $(PYTEST_WORKERS) --dist loadfile $(PYTEST_ARGS)

lint: $(VENV)/.installed-dev  ## ruff check and format check
	$(BIN)/ruff check .
	$(BIN)/ruff format --check csms actors tests bench wsgi.py

format: $(VENV)/.installed-dev  ## ruff format and autofix
	$(BIN)/ruff format csms actors tests bench wsgi.py
	$(BIN)/ruff check --fix .

bench: $(VENV)/.installed-dev  ## the benchmarks against the baseline (BENCH_ARGS=...)
	bash .ci/services
	$(BIN)/python bench/run.py $(BENCH_ARGS)

clean:  ## remove the virtual environment, caches and npm installs
	rm -rf $(VENV) .pytest_cache .ruff_cache $(DASHBOARD)/node_modules $(VENDOR)
