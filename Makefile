# tympan — the README's commands: `make demo` and `make test`.
# Every target sets up what it needs (system packages, .venv, broker) first.
SHELL := /bin/bash
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
PY := $(VENV)/bin/python
# onnxruntime flavour: cpu (default) or gpu. Exactly one is ever installed.
ORT ?= cpu
EXTRAS ?= $(ORT),train,dev
STAMP := $(VENV)/.installed-$(shell cat pyproject.toml | sha256sum | cut -c1-12)-$(ORT)

.PHONY: setup system test test-unit lint format kafka-up kafka-down kafka-status kafka-logs kafka-up-secure kafka-down-secure demo models bench clean

setup: $(STAMP)

system:
	scripts/setup-system.sh

$(STAMP): pyproject.toml scripts/setup-venv.sh
	scripts/setup-system.sh
	PYTHON="$(PYTHON)" EXTRAS="$(EXTRAS)" ORT="$(ORT)" scripts/setup-venv.sh
	rm -f $(VENV)/.installed-*
	touch $@

test: setup
	scripts/run-tests.sh

test-unit: setup
	$(PY) -m pytest tests/unit -q

lint: setup
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy --strict stream exporters

format: setup
	$(VENV)/bin/ruff format .
	$(VENV)/bin/ruff check --fix .

kafka-up: setup
	scripts/kafka.sh up

kafka-down: setup
	scripts/kafka.sh down

kafka-up-secure: setup
	scripts/kafka.sh up --secure

kafka-down-secure: setup
	scripts/kafka.sh down --secure

kafka-status: setup
	scripts/kafka.sh status

kafka-logs: setup
	scripts/kafka.sh logs -f

demo: setup
	scripts/demo.sh

models: setup
	$(PY) -m models.zoo build all

bench: setup
	scripts/bench.sh --quick

clean:
	rm -rf .pytest_cache .mypy_cache .ruff_cache test-artifacts
