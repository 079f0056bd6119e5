# Fly Potato platform — `make help` lists every target.
SHELL := /bin/bash
.DEFAULT_GOAL := help
PY ?= python3.11
VENV := .venv
PYTHON := $(VENV)/bin/python
STACK ?= dev
export FLY_POTATO_TOOLCHAIN ?= $(HOME)/.cache/fly-potato/toolchain
TOOLCHAIN := $(FLY_POTATO_TOOLCHAIN)
export PULUMI_HOME := $(TOOLCHAIN)/pulumi-home
export PULUMI_SKIP_UPDATE_CHECK := true
export PATH := $(TOOLCHAIN)/bin:$(PATH)

.PHONY: help
help: ## List the targets
	@awk 'BEGIN {FS = ":.*## "} /^[a-zA-Z0-9_-]+:.*## / {printf "  \033[1m%-14s\033[0m %s\n", $$1, $$2}' $(MAKEFILE_LIST)

$(VENV)/.installed: requirements.txt $(wildcard app/requirements.txt policy/requirements.txt requirements-dev.txt)
	@scripts/prereqs.sh python
	@test -x $(PYTHON) || $(PY) -m venv $(VENV) || python3 -m venv $(VENV)
	$(PYTHON) -m pip install -q --disable-pip-version-check -r requirements.txt
	@touch $@

.PHONY: venv
venv: $(VENV)/.installed ## Python virtualenv with the pinned SDKs, app and test dependencies

.PHONY: deps
deps: venv ## Everything the default test tier needs (Debian packages for PostgreSQL, nginx, Prometheus)
	@for script in scripts/deps/*.sh; do bash "$$script" || { echo "deps: $$script failed" >&2; exit 1; }; done

.PHONY: test
test: deps ## Default test tier: mock-tier program tests and real PostgreSQL/nginx/promtool tests
	$(PYTHON) -m pytest -q

.PHONY: test-unit
test-unit: venv ## Only the Pulumi mock tier (569 tests, no system packages)
	$(PYTHON) -m pytest -q tests/unit

.PHONY: lint
lint: venv ## ruff and mypy
	$(PYTHON) -m ruff check .
	$(PYTHON) -m ruff format --check .
	$(PYTHON) -m mypy
	$(PYTHON) -m mypy --strict -p backup -p monitoring  # the in-container programs, as their images import them

.PHONY: plan
plan: venv ## Offline policy plan of STACK under mocks (JSON=1 for JSON); exit 1 on mandatory violations
	$(PYTHON) -m policy_plan --stack $(STACK) $(if $(JSON),--json,)

.PHONY: docs
docs: venv ## Regenerate docs/ (ports, topology, config reference, policies) from the program
	$(PYTHON) -m scripts.gendocs

.PHONY: bench-plan
bench-plan: venv ## Time the offline prod plan and the policies (goals: < 2 s, < 200 ms)
	$(PYTHON) -m bench.plan

.PHONY: bench-app
bench-app: deps ## Backend benchmark: 1,000,000 flights + 300 regions; P50/P95/P99 per stats endpoint, import rows/s
	$(PYTHON) -m bench.app

.PHONY: migrate
migrate: venv ## alembic upgrade head against FLY_POTATO_MIGRATOR_URL (or the stack outputs)
	$(VENV)/bin/alembic upgrade head

.PHONY: bench-backup
bench-backup: deps ## Backup benchmark on 1,000,000 flights: dump time, restore time (RTO), worst-case RPO
	$(PYTHON) -m bench.backup --natural

.PHONY: e2e
e2e: venv images toolchain policy-venv ## Container tier: throwaway dev- and prod-profile stacks through pulumi up, tested, destroyed
	@bash scripts/deps/nginx.sh >/dev/null  # the pinned sslyze the edge tier uses, for the prod-profile scan
	$(PYTHON) -m pytest -q -m e2e tests/e2e --durations=20

.PHONY: bench-e2e
bench-e2e: venv images toolchain policy-venv ## pulumi up from nothing vs the readiness critical path; no-op up; previews
	$(PYTHON) -m bench.e2e

.PHONY: toolchain
toolchain: venv ## Pulumi CLI, Python language host and the six provider plugins of scripts/toolchain.lock
	bash scripts/toolchain.sh

.PHONY: toolchain-env
toolchain-env: ## Shell lines that put the toolchain on PATH: eval "$$(make -s toolchain-env)"
	@bash scripts/toolchain.sh --env

policy/.venv/.installed: policy/requirements.txt
	@test -x policy/.venv/bin/python || $(PY) -m venv policy/.venv || python3 -m venv policy/.venv
	policy/.venv/bin/python -m pip install -q --disable-pip-version-check -r policy/requirements.txt
	@touch $@

.PHONY: policy-venv
policy-venv: policy/.venv/.installed ## The policy pack's own virtualenv (policy/.venv), which the engine runs it with

.PHONY: engine
engine: ## A running Docker engine (installs docker.io and starts dockerd when none answers)
	bash scripts/docker-engine.sh

.PHONY: images
images: engine ## Build every image the stacks use, locally (no registry needed)
	bash images/build.sh

.PHONY: up
up: venv ## pulumi up of STACK (dev) on the local Docker engine, with the policy pack; toolchain and images provided
	@bash scripts/stack.sh estimate $(STACK)
	@$(MAKE) --no-print-directory images toolchain policy-venv
	bash scripts/stack.sh up $(STACK)

.PHONY: preview
preview: venv toolchain policy-venv ## pulumi preview of STACK with the policy pack
	bash scripts/stack.sh preview $(STACK)

.PHONY: refresh
refresh: venv toolchain ## pulumi refresh of STACK: the state re-read from Docker, Postgres and Keycloak
	bash scripts/stack.sh refresh $(STACK)

.PHONY: destroy
destroy: venv toolchain ## pulumi destroy of STACK; asks before deleting data volumes (YES=1 confirms)
	YES=$(YES) bash scripts/stack.sh destroy $(STACK)

.PHONY: outputs
outputs: ## Stack outputs of STACK as JSON (secrets shown): make -s outputs
	@bash scripts/stack.sh outputs $(STACK)

.PHONY: rollback
rollback: venv ## Roll STACK back: TO=<git ref of the previous release> (or IMAGE=… REVISION=…); DRY_RUN=1 plans, YES=1 skips the prompt
	bash scripts/rollback.sh $(STACK) $(if $(TO),--to $(TO),) $(if $(IMAGE),--image $(IMAGE),) $(if $(REVISION),--revision $(REVISION),) $(if $(DRY_RUN),--dry-run,) $(if $(YES),--yes,)

.PHONY: test-host
test-host: venv ## Host-side release and firewall scripts for real: network namespaces (root), stub docker, PostgreSQL
	bash scripts/deps/host.sh
	bash scripts/deps/postgres.sh
	$(PYTHON) -m pytest -q tests/host

.PHONY: e2e-swarm
# The whole prod platform runs on the lab: it gets both cores (the main engine is idle meanwhile).
e2e-swarm: venv images toolchain policy-venv ## Swarm tier (root): a real 3-node swarm lab and its TLS registry (scripts/swarm-lab.sh), the swarm components, the pack and the whole prod platform with a node lost on it, removed
	@bash scripts/deps/registry.sh >/dev/null
	FP_SWARM_CPUS=$${FP_SWARM_CPUS:-2} $(PYTHON) -m pytest -m e2e tests/swarm -v --durations=15
