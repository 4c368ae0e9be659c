# Every target bootstraps its own virtual environment: `make run` and `make test` work on a fresh machine.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
# One stamp per purpose: `make run` installs only what running needs; the test and benchmark
# extras (TA-Lib, QuantLib, chdb, Playwright, vectorbt, ...) come with `make test` / `make bench`.
RUN_STAMP   := $(VENV)/.installed-run
TEST_STAMP  := $(VENV)/.installed-test
BENCH_STAMP := $(VENV)/.installed-bench
PIP    := $(BIN)/python -m pip install -q --disable-pip-version-check
ARGS   ?=

UI     := src/mandi/web/ui
UI_STAMP := $(UI)/node_modules/.installed

.PHONY: run test bench lint format system-deps ui clean

# Installs are quiet: one line says what is happening, pip and npm speak only when they fail.
$(BIN)/python:
	@echo "mandi: creating $(VENV)"
	@$(PYTHON) -m venv $(VENV)

$(RUN_STAMP): pyproject.toml | $(BIN)/python
	@echo "mandi: installing mandi and its runtime dependencies into $(VENV)"
	@$(PIP) -e .
	@touch $@

# Groww's official SDK (the second client of `mandi fakebroker groww` in tests/integration)
# pins pandas<3 while vectorbt (bench) needs pandas>=3; it runs on pandas 3 (it only reads its
# instrument CSV with it), so it is installed without its pins; the packages it imports are in
# the test extra.
GROWW_SDK := growwapi==1.5.0

$(TEST_STAMP): pyproject.toml | $(BIN)/python
	@echo "mandi: installing mandi with the test dependencies into $(VENV)"
	@$(PIP) -e '.[test]'
	@$(PIP) --no-deps '$(GROWW_SDK)'
	@touch $@ $(RUN_STAMP)

$(BENCH_STAMP): pyproject.toml | $(BIN)/python
	@echo "mandi: installing mandi with the test and benchmark dependencies into $(VENV)"
	@$(PIP) -e '.[test,bench]'
	@$(PIP) --no-deps '$(GROWW_SDK)'
	@touch $@ $(TEST_STAMP) $(RUN_STAMP)

# The dashboard's JavaScript libraries (lightweight-charts) come from npm, pinned by the lock file;
# they are served from node_modules, never copied into the repository.
$(UI_STAMP): $(UI)/package.json $(UI)/package-lock.json
	@echo "mandi: installing the dashboard's chart library (npm)"
	@cd $(UI) && npm ci --no-audit --no-fund --loglevel=error --silent
	@touch $(UI_STAMP)

ui: $(UI_STAMP)

run: $(RUN_STAMP) $(UI_STAMP)
	@$(BIN)/mandi run $(ARGS)

# redis-server and chromium come from apt-get where missing (tests start them on loopback).
system-deps:
	@bash scripts/system-deps.sh

test: $(TEST_STAMP) $(UI_STAMP) system-deps
	$(BIN)/python -m pytest -q $(ARGS)

bench: $(BENCH_STAMP) $(UI_STAMP)
	$(BIN)/python benchmarks/run_all.py $(ARGS)

lint: $(TEST_STAMP)
	$(BIN)/ruff check src tests benchmarks
	$(BIN)/ruff format --check src tests benchmarks
	$(BIN)/mypy

format: $(TEST_STAMP)
	$(BIN)/ruff format src tests benchmarks
	$(BIN)/ruff check --fix src tests benchmarks

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache .mypy_cache .ruff_cache $(UI)/node_modules
