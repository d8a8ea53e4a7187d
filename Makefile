# sc_assets — set-up and everyday commands. `make demo` and `make test` do all set-up.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
export DAGSTER_HOME := $(CURDIR)/.dagster_home
# single-run backfills: one planned event per asset for the whole range, not one per partition,
# and the per-partition materializations of a step stored as one batch (the same defaults as
# sc_assets/deploy/profiles.py DAGSTER_ENV_DEFAULTS, which the code location applies too)
export DAGSTER_EMIT_PARTITION_SUBSET_IN_PLANNED_EVENTS := 1
export DAGSTER_EVENT_BATCH_SIZE := 10000
PORT ?= 3000

.PHONY: venv demo dev test test-fast bench lint clean-data cluster-up cluster-down cluster-dev bench-cluster

# The virtual environment is (re)built from pyproject.toml only when that file changes.
$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev,cluster]'
	@touch $(STAMP)

venv: $(STAMP)

$(DAGSTER_HOME)/dagster.yaml: sc_assets/deploy/dagster.local.yaml
	@mkdir -p $(DAGSTER_HOME)
	cp $< $@

demo: venv $(DAGSTER_HOME)/dagster.yaml
	$(BIN)/sc-assets demo

dev: venv $(DAGSTER_HOME)/dagster.yaml
	$(BIN)/dagster dev -w workspace.yaml -h 127.0.0.1 -p $(PORT)

test: venv
	bash scripts/ensure_chromium.sh
	$(BIN)/python -m pytest -q -p no:cacheprovider

bench: venv
	$(BIN)/sc-assets bench --cluster-days 250

lint: venv
	$(BIN)/ruff check sc_assets sc_assets_tests

clean-data:
	rm -rf data/landing data/lake data/warehouse.duckdb data/reports data/ground_truth

# Past one machine (docs/CLUSTER.md): PostgreSQL + Redis + S3 (moto) + 2 Celery workers on
# 127.0.0.1, state in .cluster/ (git-ignored). Then: make cluster-dev (dagster dev on that instance)
cluster-up: venv
	$(BIN)/python -m sc_assets.deploy.cluster up --dir .cluster

cluster-down:
	@test -x $(BIN)/python && $(BIN)/python -m sc_assets.deploy.cluster down --dir .cluster || true

# dagster dev on the cluster profile: PostgreSQL instance, Celery executor, lake on S3
cluster-dev: venv
	source .cluster/env.sh && $(BIN)/dagster dev -w workspace.yaml -h 127.0.0.1 -p $(PORT)

# 250-session backfill: cluster (Celery + S3) vs local multiprocess (starts its own cluster)
bench-cluster: venv
	$(BIN)/python -m sc_assets.deploy.bench_cluster
