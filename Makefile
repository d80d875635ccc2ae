# kdag — developer entry points. `make demo` and `make test` are the two commands a
# newcomer needs; everything they install is installed by the targets below.
SHELL := /bin/bash
.DEFAULT_GOAL := help

PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
# The venv is rebuilt whenever the pinned dependencies change.
VENV_STAMP := $(VENV)/.installed

.PHONY: help
help: ## list targets (the README's two commands first)
	@grep -hE '^[a-zA-Z_-]+:.*## ' $(MAKEFILE_LIST) | sort \
	  | awk -F':.*## ' '/^(demo|test):/ {printf "  %-18s %s\n", $$1, $$2; next} {rest = rest sprintf("  %-18s %s\n", $$1, $$2)} END {printf "%s", rest}'

$(VENV_STAMP): pyproject.toml requirements.lock
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip==24.3.1
	$(BIN)/pip install --quiet -c requirements.lock -e '.[dev]'
	touch $@

.PHONY: venv
venv: $(VENV_STAMP) ## create the virtualenv with pinned dependencies

.PHONY: lint
lint: venv ## ruff, mypy --strict on operator/kdag, and the import layers (lint-imports)
	$(BIN)/ruff check operator tests bench
	$(BIN)/ruff format --check operator tests bench
	$(BIN)/mypy
	$(BIN)/lint-imports

.PHONY: crds
crds: venv ## regenerate crds/ from the pydantic models
	$(BIN)/python -m kdag.api.crdgen crds

.PHONY: unit
unit: venv ## unit and property tests (no cluster)
	$(BIN)/pytest tests/unit


# The operator runs as the chart's ServiceAccount with the chart's RBAC (docs/testing.md "RBAC
# modes"): the whole suite with the cluster-wide ClusterRole, then these modules again with
# the namespaced mode's Roles (the run paths, Workflows, and the resync after a lost watch).
NAMESPACED_RBAC_TESTS := \
	tests/integration/test_run_dags.py \
	tests/integration/test_run_failures.py \
	tests/integration/test_run_control.py \
	tests/integration/test_workflow_status.py \
	tests/integration/test_faults_job_deleted.py

.PHONY: test
test: venv cluster-bins test-deps ## unit, property and integration tests; brings the local cluster up once
	$(BIN)/pytest tests
	KDAG_IT_RBAC_MODE=namespaced $(BIN)/pytest $(NAMESPACED_RBAC_TESTS)

.PHONY: test-namespaced
test-namespaced: venv cluster-bins ## the operator tests of `make test` that also run under the chart's namespaced RBAC
	KDAG_IT_RBAC_MODE=namespaced $(BIN)/pytest $(NAMESPACED_RBAC_TESTS)

-include hack/*.mk
