# usage-gateway — `make help` lists the targets.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
# make run HOST=0.0.0.0 PORT=8001 (set on make's command line; the environment's HOST is not used)
HOST = 127.0.0.1
PORT = 8000
# make test TEST_WORKERS=0: the suite in one process (auto: one per core, at most 4)
TEST_WORKERS = auto

.DEFAULT_GOAL := help
.PHONY: help install run test fuzz check lint format typecheck schema schema-check clean bench screenshots assets

help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-13s %s\n", $$1, $$2}'

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	@touch $(STAMP)

install: $(STAMP) ## create .venv and install the package with its dev tools

run: $(STAMP) ## start the demo: the vendor emulators and the gateway (HOST=127.0.0.1 PORT=8000)
	$(BIN)/usage-gateway demo --host $(HOST) --port $(PORT)

test: $(STAMP) ## run the test suite (one process per core, at most 4; TEST_WORKERS=0: one process)
	$(BIN)/python -m pytest -n $(TEST_WORKERS) --maxprocesses 4 --dist loadfile

fuzz: $(STAMP) ## schemathesis: 1000 generated queries per root field and mode (make test runs 20)
	FUZZ_EXAMPLES=1000 $(BIN)/python -m pytest tests/test_fuzz.py

check: lint typecheck schema-check ## lint, type-check and check schema.graphql

lint: $(STAMP) ## ruff lint and format check
	$(BIN)/ruff check gateway providers tests benchmarks
	$(BIN)/ruff format --check gateway providers tests benchmarks

format: $(STAMP) ## apply ruff fixes and formatting
	$(BIN)/ruff check --fix gateway providers tests benchmarks
	$(BIN)/ruff format gateway providers tests benchmarks

typecheck: $(STAMP) ## mypy --strict on gateway and providers
	$(BIN)/mypy gateway providers

schema: $(STAMP) ## regenerate schema.graphql from the code
	$(BIN)/python -m strawberry export-schema gateway.graphql.schema:schema --output schema.graphql

schema-check: $(STAMP) ## fail when schema.graphql is stale
	@$(BIN)/python -m strawberry export-schema gateway.graphql.schema:schema | diff -u schema.graphql - \
		&& echo "schema.graphql is current" || (echo "schema.graphql is stale: run make schema"; exit 1)

screenshots: $(STAMP) ## refresh docs/dashboard.png and docs/graphiql.png from the demo (needs Chromium)
	SCREENSHOTS_OUT=docs $(BIN)/python -m pytest -q tests/browser/test_screenshots.py -k taken

clean: ## remove .venv and caches
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache *.egg-info

bench: $(STAMP) ## measure coalescing, cold fan-out and warm throughput side by side
	$(BIN)/python -m benchmarks.bench

assets: ## npm ci in web/, then copy the browser files and licenses into gateway/static/vendor/
	cd web && npm ci --ignore-scripts --no-audit --no-fund
	$(PYTHON) web/vendor.py
