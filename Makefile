# kfm-runbooks — every target sets up what it needs from nothing (python3 + make).
#   make demo   a demo incident, end to end, on the built-in sandbox
#   make test   lint + the whole test suite (what CI runs)

PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
KERNEL := $(VENV)/share/jupyter/kernels/kfm-runbook/kernel.json
# One xdist worker per core; tests spread one by one, except that a module sharing a
# module-scoped fixture (a live sandbox) stays on one worker (tests/conftest.py groups it).
PYTEST_ARGS ?= -n auto --dist loadgroup

.PHONY: help venv kernel browser services openssh faketime demo test test-fast test-future lint format golden bench lock dev precommit dist clean

help:
	@sed -n '2,3p' Makefile

$(STAMP): pyproject.toml requirements/constraints.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check \
		-c requirements/constraints.txt -e '.[dev,lab]'
	touch $(STAMP)

venv: $(STAMP)

$(KERNEL): $(STAMP) kernels/kfm-runbook/kernel.json
	$(BIN)/kfm-runbook kernel install

kernel: $(KERNEL)

# Headless Chromium from Debian for the report / UI tests (playwright drives it; no download).
CHROMIUM := $(shell command -v chromium 2>/dev/null)
browser:
ifeq ($(CHROMIUM),)
	@echo "installing Debian's chromium (report and UI tests need it)"
	$(if $(filter 0,$(shell id -u)),,sudo) apt-get update -qq
	DEBIAN_FRONTEND=noninteractive $(if $(filter 0,$(shell id -u)),,sudo) apt-get install -y -qq chromium
endif

# Debian's openssh-client: ssh-keygen signs and checks ledger entries (signing tests need it).
SSH_KEYGEN := $(shell command -v ssh-keygen 2>/dev/null)
openssh:
ifeq ($(SSH_KEYGEN),)
	@echo "installing Debian's openssh-client (ledger signatures need ssh-keygen)"
	$(if $(filter 0,$(shell id -u)),,sudo) apt-get update -qq
	DEBIAN_FRONTEND=noninteractive $(if $(filter 0,$(shell id -u)),,sudo) apt-get install -y -qq openssh-client
endif

demo: kernel services
	PATH="$(CURDIR)/$(BIN):$$PATH" bash tools/demo.sh

lint: venv
	$(BIN)/ruff check tools tests
	$(BIN)/ruff format --check tools tests
	git ls-files -z | xargs -0 $(BIN)/detect-private-key
	git ls-files -z | xargs -0 $(BIN)/check-added-large-files --enforce-all --maxkb=1024
	$(BIN)/mypy
	$(BIN)/kfm-runbook schema --check
	$(BIN)/python tools/cli_reference.py --check
	$(BIN)/kfm-runbook lint runbooks
	$(BIN)/kfm-runbook index --check

format: venv
	$(BIN)/ruff format tools tests
	$(BIN)/ruff check --fix tools tests

# PostgreSQL + PostGIS from Debian for the live sandbox (`kfm-runbook sandbox up`).
PG_CTL := $(wildcard /usr/lib/postgresql/*/bin/pg_ctl)
POSTGIS := $(wildcard /usr/share/postgresql/*/extension/postgis.control)
services:
ifeq ($(and $(PG_CTL),$(POSTGIS)),)
	@echo "installing Debian's postgresql + postgis (the live sandbox needs them)"
	$(if $(filter 0,$(shell id -u)),,sudo) apt-get update -qq
	DEBIAN_FRONTEND=noninteractive $(if $(filter 0,$(shell id -u)),,sudo) apt-get install -y -qq \
		postgresql postgresql-15-postgis-3
endif

test: kernel browser services openssh lint
	$(BIN)/pytest $(PYTEST_ARGS)

# The inner loop: everything but the tests marked slow (real kernels, live services).
test-fast: kernel openssh lint
	$(BIN)/pytest $(PYTEST_ARGS) -m "not slow"

# The whole suite under a clock 18 months ahead (Debian's libfaketime): nothing a test
# relies on may expire or go stale with the calendar. A relative offset, so that every
# process sees one clock ("@DATE" would restart it at DATE in each new process).
FUTURE ?= +550d
FAKETIME := $(shell command -v faketime 2>/dev/null)
faketime:
ifeq ($(FAKETIME),)
	@echo "installing Debian's faketime (make test-future needs it)"
	$(if $(filter 0,$(shell id -u)),,sudo) apt-get update -qq
	DEBIAN_FRONTEND=noninteractive $(if $(filter 0,$(shell id -u)),,sudo) apt-get install -y -qq faketime
endif

test-future: kernel browser services openssh faketime
	faketime -f "$(FUTURE)" $(BIN)/pytest $(PYTEST_ARGS)

golden: kernel
	$(BIN)/kfm-runbook golden

bench: kernel
	$(BIN)/python tests/bench/bench_run.py
	$(BIN)/python tests/bench/bench_scan.py
	$(BIN)/python tests/bench/bench_verify.py
	$(BIN)/python tests/bench/bench_sweep.py

# Contributor set-up: nbdime's git diff/merge drivers for notebooks (this repo only) and
# the pre-commit hooks (ruff, runbook lint, index check, private keys, large files).
dev: kernel
	$(BIN)/nbdime config-git --enable
	$(BIN)/pre-commit install

precommit: venv
	$(BIN)/pre-commit run --all-files

# The sdist and the wheel a release publishes (the wheel carries runbooks/ and kernels/ as
# package data), checked the way the package index will check them.
dist: venv
	rm -rf dist
	$(BIN)/python -m build --outdir dist
	$(BIN)/twine check --strict dist/*

# Re-pin every dependency from a fresh resolve (commit requirements/constraints.txt).
lock:
	rm -rf .lock-venv && $(PYTHON) -m venv .lock-venv
	.lock-venv/bin/python -m pip install --quiet -e '.[dev,lab]'
	.lock-venv/bin/python -m pip freeze --exclude-editable > requirements/constraints.txt
	rm -rf .lock-venv

clean:
	rm -rf $(VENV) .kfm .pytest_cache .mypy_cache .ruff_cache build dist
