# tympan — the README's commands: `make demo` and `make test`.
# Every target sets up what it needs (system packages, .venv, broker) first.
SHELL := /bin/bash
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
PY := $(VENV)/bin/python
# onnxruntime flavour: cpu (default) or gpu. Exactly one is ever installed.
ORT ?= cpu
EXTRAS ?= $(ORT),train,dev
# The lock file pins every package of the cpu,train,dev extras for Linux x86-64 / Python 3.11;
# `make lock` regenerates it after pyproject.toml changes (`make lock UPGRADE=1` moves every pin
# to the newest release the ranges allow). The setup stamp hashes everything that decides what
# gets installed, so a changed lock, pyproject or setup script re-runs setup.
LOCK := requirements-dev.lock
LOCK_EXTRAS := cpu train dev
STAMP := $(VENV)/.installed-$(shell cat pyproject.toml $(LOCK) scripts/setup-venv.sh | sha256sum | cut -c1-12)-$(ORT)

.PHONY: setup system lock test test-fast test-unit lint format kafka-up kafka-down kafka-status kafka-logs kafka-up-secure kafka-down-secure kafka-up-cluster kafka-down-cluster kafka-status-cluster demo models bench clean real-set eval-real

setup: $(STAMP)

system:
	scripts/setup-system.sh

$(STAMP): pyproject.toml $(LOCK) scripts/setup-venv.sh
	scripts/setup-system.sh
	PYTHON="$(PYTHON)" EXTRAS="$(EXTRAS)" ORT="$(ORT)" LOCK="$(LOCK)" scripts/setup-venv.sh
	rm -f $(VENV)/.installed-*
	touch $@

# Needs only uv (installed into .venv if missing), not a working setup: the old lock may no
# longer fit a changed pyproject.toml.
lock:
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	test -x $(VENV)/bin/uv || $(PY) -m pip install -q uv
	$(VENV)/bin/uv pip compile pyproject.toml $(addprefix --extra ,$(LOCK_EXTRAS)) \
		--python-version 3.11 --python-platform x86_64-manylinux_2_28 \
		$(if $(UPGRADE),--upgrade) -o $(LOCK)

test: setup
	scripts/run-tests.sh

# The inner loop: lint, then the unit tests that need no broker, no TensorFlow and no
# long run (markers kafka, tf and slow deselected). `make test` stays the whole suite.
FAST_MARKERS := not tf and not slow and not kafka and not security and not cluster and not browser and not faults

test-fast: setup
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy --strict stream exporters
	$(PY) -m pytest -p no:cacheprovider -q tests/unit -m "$(FAST_MARKERS)"

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

# Three KRaft nodes on 127.0.0.1:9101-9103 (replicated, min.insync.replicas=2) for the
# failover tests and for trying tympan on a cluster (docs/kafka.md).
kafka-up-cluster: setup
	scripts/kafka.sh up --cluster

kafka-down-cluster: setup
	scripts/kafka.sh down --cluster

kafka-status-cluster: setup
	scripts/kafka.sh status --cluster

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

# The real-recording evaluation set (issue #25): Debian packages fetched with apt-get
# download into ~/.cache/tympan/realset, clips laid out for tympan evaluate / speakers
# evaluate (models/realset/manifest.json lists every file, licence and label).
real-set: setup
	PYTHONPATH=$(CURDIR) $(PY) -m models.realset build

eval-real: real-set
	PYTHONPATH=$(CURDIR) $(PY) -m models.realset evaluate
