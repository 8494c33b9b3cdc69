# Two commands: `make dev` runs the platform, `make test` runs every check. Both bootstrap what
# they need (a virtualenv in .venv/, the project with its test extra, npm ci for auth/ and for the
# console's browser assets in api/console/, and Chromium for the browser tests: tests/console/).
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: dev test chaos lint typecheck install bench bench-sessions bench-outage clean

$(STAMP): pyproject.toml auth/package-lock.json api/console/package-lock.json
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test]'
	cd auth && npm ci --no-audit --no-fund --loglevel=error
	cd api/console && npm ci --no-audit --no-fund --loglevel=error
	touch $(STAMP)

install: $(STAMP)

dev: $(STAMP)
	$(BIN)/polaris dev

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: $(STAMP)
	$(BIN)/mypy

test: $(STAMP) lint typecheck
	$(BIN)/pytest

# The chaos suite (tests/chaos, docs/testing.md): minutes of faults, so not in `make test`.
# POLARIS_CHAOS_SEED=<seed> replays a run's fault schedule.
chaos: $(STAMP)
	POLARIS_CHAOS=1 $(BIN)/pytest tests/chaos -s -p no:cacheprovider

bench: $(STAMP)
	$(BIN)/python -m bench.gateway_load

# End-to-end sessions/s (billed in the Lago sandbox) vs a trivial workflow on the same Temporal
# server, and the 60 s Temporal outage (docs/performance.md). Minutes each; not in `make test`.
bench-sessions: $(STAMP)
	$(BIN)/python -m bench.session_throughput

bench-outage: $(STAMP)
	$(BIN)/python -m bench.temporal_outage

clean:
	rm -rf $(VENV) auth/node_modules api/console/node_modules .mypy_cache .pytest_cache .ruff_cache
