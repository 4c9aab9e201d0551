# adplatform: every command a developer, CI or a new user needs. `make help` lists them.
SHELL := /bin/bash
.DEFAULT_GOAL := help

PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-$(shell cat pyproject.toml requirements.lock | sha1sum | cut -c1-12)

.PHONY: help setup tools up down status demo test bench soak lint format lock clean

help: ## List the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-8s %s\n", $$1, $$2}'

setup: $(STAMP) ## Install what the lakehouse needs: system packages, Python env, broker jars (idempotent)
	@$(BIN)/adplatform stack install

tools: setup ## Build the provisioning tools (OpenTofu, Helm, kubectl, hcloud provider, a local Kubernetes control plane and kwok) into .tools/
	@infra/tools/build-tools.sh

$(STAMP): pyproject.toml requirements.lock infra/local/system-packages.sh
	infra/local/system-packages.sh
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	@test -x $(BIN)/uv || $(BIN)/pip install --quiet "$$(grep '^uv==' requirements.lock)"
	$(BIN)/uv pip sync --quiet --python $(BIN)/python requirements.lock
	$(BIN)/uv pip install --quiet --python $(BIN)/python --no-deps -e .
	@rm -f $(VENV)/.installed-*
	@touch $@

up: setup ## Start the local stack (Kafka, MLflow, Spark Connect, Airflow, JupyterHub) and wait until healthy
	$(BIN)/adplatform stack up

down: ## Stop the local stack, leaving no process behind
	@if [ -x $(BIN)/adplatform ]; then $(BIN)/adplatform stack down; fi

status: ## Show the health of each local service
	$(BIN)/adplatform stack status

demo: up ## Run the main job: the whole lakehouse on local defaults
	$(BIN)/adplatform demo

test: setup ## Run the whole test suite (starts the services it needs; builds the tools meanwhile)
	$(BIN)/pytest --durations=25

bench: setup ## Run every benchmark; results in benchmarks/results/
	$(BIN)/python -m benchmarks

soak: setup ## Ingest while 100 workers and 10 brokers are SIGKILLed; reconcile (not in CI)
	$(BIN)/python -m benchmarks.soak --output benchmarks/results/soak.json

lint: setup ## ruff check, ruff format --check, mypy, lint-imports (the layering contracts)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy
	$(BIN)/lint-imports --no-logo

format: setup ## Rewrite files with ruff's formatter and fixes
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

lock: ## Re-resolve requirements.lock from pyproject.toml
	$(BIN)/uv pip compile pyproject.toml --extra dev --python-version 3.11 -o requirements.lock

clean: down ## Remove the environment, tools and local data
	rm -rf $(VENV) .tools .data
