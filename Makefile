# Two commands do all set-up on a fresh machine:
#   make run   - virtualenv, install, migrate (SQLite), seed the demo, serve on http://localhost:8000
#   make test  - virtualenv, install (incl. test tools and the system Chromium), lint, run the tests
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
PORT ?= 8000
# One process: schemathesis items share one node ID per test function, and pytest-xdist (-n) would
# collapse them into one, silently running a fraction of the fuzz cases (the fuzz modules skip under -n).
PYTEST_ARGS ?=

.PHONY: run test lint venv deps dev-deps chromium clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip

$(VENV)/.deps: requirements.txt | $(BIN)/python
	$(BIN)/pip install --quiet -r requirements.txt
	touch $@

$(VENV)/.dev-deps: requirements.txt requirements-dev.txt | $(BIN)/python
	$(BIN)/pip install --quiet -r requirements-dev.txt
	touch $@ $(VENV)/.deps

deps: $(VENV)/.deps
dev-deps: $(VENV)/.dev-deps

run: deps
	mkdir -p var
	PLATFORM_URL=http://localhost:$(PORT) $(BIN)/python manage.py migrate --noinput
	PLATFORM_URL=http://localhost:$(PORT) $(BIN)/python manage.py demo
	# Loopback only: development settings (DEBUG, public dev keys) must not face a network.
	PLATFORM_URL=http://localhost:$(PORT) $(BIN)/python manage.py runserver 127.0.0.1:$(PORT)

chromium:
	@scripts/ensure-chromium

lint: dev-deps
	$(BIN)/ruff check .
	$(BIN)/lint-imports --no-logo
	$(BIN)/hadolint Dockerfile
	$(BIN)/check-jsonschema --builtin-schema vendor.compose-spec compose.yaml

test: dev-deps chromium lint
	$(BIN)/python -m pytest $(PYTEST_ARGS)

clean:
	rm -rf $(VENV) var
