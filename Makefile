# The two commands: `make run` and `make test`. Both install what they need.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
HOST   ?= 127.0.0.1
PORT   ?= 8000
export HOST PORT

.PHONY: run test install system-deps lint typecheck schema-check pytest bench clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

## Serve the BFF on its embedded defaults (SQLite file, in-process broker), seeded with a small demo.
run: install
	$(BIN)/bff run --seed small

## Postgres, Redis, Chromium and Node for the suite: installed with apt-get where missing.
system-deps:
	./scripts/ensure-system-deps.sh

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: install
	$(BIN)/mypy

schema-check: install
	$(BIN)/bff check-schema

pytest: install system-deps
	$(BIN)/pytest -q -p no:cacheprovider

## The whole suite: lint, types, schema, then pytest against throw-away Postgres and Redis.
test: install system-deps lint typecheck schema-check pytest

## Home side by side with the peers (naive-strawberry, mercurius) in one run: see docs/benchmarks.md.
bench: install
	./bench/side_by_side.sh

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache
