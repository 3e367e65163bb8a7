# The README's two set-up commands: `make synth` and `make test`. Each installs what it
# needs first: pipenv (pip), the Python packages (Pipfile.lock), Node 22 LTS and the
# cdktf CLI (package-lock.json), and for the tests Debian's PostgreSQL server (apt).

SHELL := /bin/bash
PYTHON ?= python3
PIPENV_VERSION := 2026.10.3
PIPENV := $(PYTHON) -m pipenv
SUDO := $(if $(filter 0,$(shell id -u)),,sudo)
APT_INSTALL := $(SUDO) apt-get update -qq && DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq --no-install-recommends

export PIPENV_VENV_IN_PROJECT := 1
export PIPENV_VERBOSITY := -1
export PIPENV_NOSPIN := 1
# No update checks or telemetry from the cdktf CLI.
export CHECKPOINT_DISABLE := 1
# Node 22 from node_modules, for the cdktf CLI and for jsii alike.
export PATH := $(CURDIR)/node_modules/.bin:$(PATH)

ENV ?=

.PHONY: up synth deploy lint test test-fast check bench bench-gateway bench-batch run-local .pipenv-ready .postgres-ready .redis-ready .chromium-ready .pubsub-ready

# The HCL is for review and never deployed; `cdktf deploy` synthesizes JSON into a folder of its
# own, emptied first, so no stack folder ever holds both cdk.tf and cdk.tf.json (Terraform would
# load both and fail on duplicates) or a stack that no longer exists.
REVIEW_DIR := cdktf.out.review
DEPLOY_DIR := cdktf.out
STACKS ?=

## Synthesize every stack of every environment in environments/ to cdktf.out.review/ (HCL, for review).
synth: .venv/.synced node_modules/.installed
	cdktf synth --hcl --output $(REVIEW_DIR)

## Deploy STACKS (e.g. STACKS="prod-network prod-registry", or STACKS='prod-*') from fresh JSON.
deploy: .venv/.synced node_modules/.installed
	@test -n "$(STACKS)" || { echo 'make deploy: name the stacks, e.g. STACKS="prod-network prod-registry"' >&2; exit 2; }
	@$(PIPENV) run python -m scripts.up --refuse-placeholders $(STACKS)
	rm -rf $(DEPLOY_DIR)
	cdktf deploy --output $(DEPLOY_DIR) $(STACKS)

## Stand ENV up on its project in one go (make up ENV=prod): the deploy steps in the checked order,
# the images with Cloud Build, the secrets (HF_TOKEN, PGADMIN_PASSWORD from the environment), the
# bootstrap job; then the chat page's URL. A second run changes nothing.
up: .venv/.synced node_modules/.installed
	@test -n "$(ENV)" || { echo 'make up: name the environment, e.g. make up ENV=prod (environments/prod.toml)' >&2; exit 2; }
	$(PIPENV) run python -m scripts.up --env environments/$(ENV).toml


# tests/services/, all of it, is a mypy run of its own: its conftest.py is a module "conftest" as
# tests/conftest.py is, and its tests import their helpers and each other by module name (pytest
# puts the folder first on the path).
## Lint: ruff check, ruff format --check, and mypy (strict) on all the code: hybrid/, analysis/, stacks/, services/, devtools/, scripts/ and tests/.
lint: .venv/.synced-dev
	$(PIPENV) run ruff check .
	$(PIPENV) run ruff format --check .
	$(PIPENV) run mypy hybrid analysis stacks services devtools scripts tests --exclude '^tests/services/'
	$(PIPENV) run mypy tests/services

# Three workers (pytest-xdist) on the machine's two cores: most of the suite's time is spent waiting
# on servers and processes, not on the CPU (measured: 249 s with three, 299 s with two, 4.5 CPU-minutes
# either way). loadgroup keeps each module's tests on one worker, so its servers start once.
PYTEST_PARALLEL := -n 3 --dist loadgroup

## Lint, then run the whole test suite (pass pytest options with ARGS=...).
test: lint .venv/.synced-dev .venv-services/.synced node_modules/.installed .postgres-ready .redis-ready .chromium-ready .pubsub-ready
	$(PIPENV) run pytest $(PYTEST_PARALLEL) $(ARGS)

## The tests that start no server, database, emulator, browser or cdktf CLI (pytest.ini's markers), in under a minute.
test-fast: .venv/.synced-dev node_modules/.installed
	$(PIPENV) run pytest $(PYTEST_PARALLEL) -m "not slow" $(ARGS)

## Synthesize every environment; check that traffic can flow along each edge of the architecture,
## and that the deploy steps meet every resource's preconditions before applying it.
check: .venv/.synced node_modules/.installed
	$(PIPENV) run python -m scripts.check_reachability
	$(PIPENV) run python -m scripts.check_apply_order

## Print synth time and memory against merely importing the provider packages.
bench: .venv/.synced node_modules/.installed
	$(PIPENV) run python scripts/bench_synth.py

## Print the gateway's CPU per request and added latency at 80 concurrent streams, beside nginx's (installed with apt).
bench-gateway: .venv/.synced-dev
	@command -v nginx >/dev/null && command -v wrk >/dev/null || { $(APT_INSTALL) nginx wrk; }
	$(PIPENV) run python -m scripts.bench_gateway $(ARGS)

## Print batch lines per second through the whole path beside the same requests one by one (ARGS="--lines N --workers N").
bench-batch: .venv/.synced-dev .venv-services/.synced .pubsub-ready .postgres-ready
	$(PIPENV) run python -m scripts.bench_batch $(ARGS)

## The platform as ENV (default dev) deploys it, on this machine, batches included; prints an OpenAI client's
## export lines (make run-local ENV=prod; ARGS="--upstream URL --model NAME" for a real model server, "--gateway-port N").
run-local: .venv/.synced-dev .venv-services/.synced node_modules/.installed .postgres-ready .pubsub-ready
	$(PIPENV) run python -m scripts.local_chain $(if $(ENV),--env environments/$(ENV).toml) $(ARGS)

# make cost / make cost-gate: offline estimates from environments/*.toml and analysis/cost/prices/.
## The dashboards as a page (test-artifacts/dashboards.html), filled with what a deploy rehearsal's services emitted.
dashboards: .venv/.synced-dev .venv-services/.synced node_modules/.installed .postgres-ready .pubsub-ready
	$(PIPENV) run pytest -q -p no:cacheprovider tests/e2e/test_deploy_rehearsal.py -k every_metric
	$(PIPENV) run python -m scripts.render_dashboards

.PHONY: cost cost-gate dashboards

## Monthly cost estimate of every environment: a table per environment, and cost-report/<env>.json (ARGS="--requests-per-day N ...").
cost: .venv/.synced
	mkdir -p cost-report
	$(PIPENV) run python main.py cost $(ARGS)
	for env in environments/*.toml; do $(PIPENV) run python main.py cost --env $$env --json $(ARGS) > cost-report/$$(basename $$env .toml).json || exit $$?; done

## Fail when prod's monthly estimate rises more than COST_LIMIT percent over policy/cost-baseline-prod.json.
COST_LIMIT ?= 10
cost-gate: .venv/.synced
	$(PIPENV) run python -m scripts.cost_gate --max-increase-percent $(COST_LIMIT)

.pipenv-ready:
	@$(PIPENV) --version >/dev/null 2>&1 || $(PYTHON) -m pip install --quiet "pipenv==$(PIPENV_VERSION)"

.venv/.synced: Pipfile.lock | .pipenv-ready
	$(PIPENV) sync
	touch $@

.venv/.synced-dev: Pipfile.lock | .pipenv-ready
	$(PIPENV) sync --categories "packages dev-packages services"
	touch $@

# The images' Python packages and nothing else, installed as services/Dockerfile's first stage
# installs them: the tests start each service on it, from the tree its image holds
# (devtools/image_tree.py), so an import of a package outside the "services" category fails here too.
.venv-services/.synced: Pipfile.lock | .pipenv-ready
	rm -rf .venv-services
	$(PYTHON) -m venv .venv-services
	$(PIPENV) requirements --categories services --hash > .venv-services/requirements.txt
	.venv-services/bin/pip install --quiet --disable-pip-version-check --require-hashes --no-deps -r .venv-services/requirements.txt
	touch $@

# The service tests start a private PostgreSQL server from Debian's binaries.
.postgres-ready:
	@ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || { $(APT_INSTALL) postgresql; }

# The gateway's shared rate limit is tested against Debian's Redis server.
.redis-ready:
	@command -v redis-server >/dev/null || $(APT_INSTALL) redis-server || { \
	  echo 'make test: redis-server is missing and apt cannot install it: apt-get install redis-server' >&2; exit 2; }

# The batch tests run Google's Pub/Sub emulator (gcloud's, on Java). Its package comes from Google's
# apt repository (packages.cloud.google.com/apt, with google-cloud-cli): where apt cannot find it,
# say how to get it rather than fail later in a test.
.pubsub-ready:
	@if ! test -d "$$(gcloud info --format='value(installation.sdk_root)' 2>/dev/null)/platform/pubsub-emulator" || ! command -v java >/dev/null; then \
	  $(APT_INSTALL) google-cloud-cli-pubsub-emulator default-jre-headless || { \
	    echo 'make test: the Pub/Sub emulator is missing and apt cannot install it. Add Google Cloud'"'"'s apt repository' >&2; \
	    echo '(cloud.google.com/sdk/docs/install#deb), then: apt-get install google-cloud-cli-pubsub-emulator default-jre-headless;' >&2; \
	    echo 'or, with gcloud from Google'"'"'s archive: gcloud components install beta pubsub-emulator' >&2; exit 2; }; \
	fi

# The browser test drives Debian's Chromium.
.chromium-ready:
	@test -x /usr/bin/chromium || { $(APT_INSTALL) chromium; }

node_modules/.installed: package-lock.json
	npm ci --no-audit --no-fund
	touch $@

## Replay a bursty trace through the orchestrator against stand-in model servers, fixed order vs health vs saturation and spill side by side (ARGS="--seconds N --seed N").
.PHONY: bench-routing
bench-routing: .venv/.synced-dev .venv-services/.synced .postgres-ready
	$(PIPENV) run python -m scripts.bench_routing $(ARGS)
