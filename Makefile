# The README's two set-up commands: `make synth` and `make test`. Each installs what it
# needs first: pipenv (pip), the Python packages (Pipfile.lock), Node 22 LTS and the
# cdktf CLI (package-lock.json).

SHELL := /bin/bash
PYTHON ?= python3
PIPENV_VERSION := 2026.10.3
PIPENV := $(PYTHON) -m pipenv

export PIPENV_VENV_IN_PROJECT := 1
export PIPENV_VERBOSITY := -1
export PIPENV_NOSPIN := 1
# No update checks or telemetry from the cdktf CLI.
export CHECKPOINT_DISABLE := 1
# Node 22 from node_modules, for the cdktf CLI and for jsii alike.
export PATH := $(CURDIR)/node_modules/.bin:$(PATH)

.PHONY: synth test bench .pipenv-ready

## Synthesize every stack of every environment in environments/ to cdktf.out/ (HCL).
synth: .venv/.synced node_modules/.installed
	cdktf synth --hcl

## Run the whole test suite (pass pytest options with ARGS=...).
test: .venv/.synced-dev node_modules/.installed
	$(PIPENV) run pytest $(ARGS)

## Print synth time and memory against merely importing the provider packages.
bench: .venv/.synced node_modules/.installed
	$(PIPENV) run python scripts/bench_synth.py

.pipenv-ready:
	@$(PIPENV) --version >/dev/null 2>&1 || $(PYTHON) -m pip install --quiet "pipenv==$(PIPENV_VERSION)"

.venv/.synced: Pipfile.lock | .pipenv-ready
	$(PIPENV) sync
	touch $@

.venv/.synced-dev: Pipfile.lock | .pipenv-ready
	$(PIPENV) sync --dev
	touch $@

node_modules/.installed: package-lock.json
	npm ci --no-audit --no-fund
	touch $@
