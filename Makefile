# The two commands a newcomer needs: `make run` and `make test`. Both set everything up first.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-stamp

.PHONY: install run test lint typecheck unit test-services bench clean

# Reinstall only when the dependency pins change. torch==2.13.0 resolves to the CPU wheel on disk.
$(STAMP): pyproject.toml sdk/pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	$(BIN)/pip install --quiet -e './sdk[langchain]'
	touch $(STAMP)

install: $(STAMP)

## Load the demo catalog (idempotent) and serve the API on $FAIRSHARE_HOST:$FAIRSHARE_PORT.
run: $(STAMP)
	$(BIN)/fairshare demo --serve

## Lint, type-check and run every test.
test: lint typecheck unit

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: $(STAMP)
	$(BIN)/mypy

unit: $(STAMP) test-services
	$(BIN)/pytest -q

# $(call debian_tool,COMMAND,PACKAGE,WHY): install PACKAGE from Debian when COMMAND is missing and
# we are root with apt-get (as CI is); otherwise stop and say what to install.
define debian_tool
	@command -v $(1) >/dev/null || { \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	    echo "installing $(2) (Debian package) for $(3)"; \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive \
	      apt-get install -y -qq --no-install-recommends $(2) >/dev/null; \
	  else \
	    echo "$(3) needs $(1) on PATH: apt-get install $(2) (or your system's package)" >&2; \
	    exit 1; \
	  fi; }
endef

## Servers the tests start themselves: a throwaway redis-server (tests/redis_server.py).
test-services:
	$(call debian_tool,redis-server,redis-server,make test)

## Issue 6's figures: a live `fairshare serve` under wrk at 1, 4 and 16 clients against the
## model-only reference (bench/serve.py), ingest against embedding alone (bench/ingest_speed.py)
## and p50/RSS at 10k, 100k and 1M chunks (bench/scale.py; its first run builds the corpora,
## ~10 min, cached in var/bench/). Each prints a table and writes bench/out/<name>.json.
bench: $(STAMP)
	$(call debian_tool,wrk,wrk,make bench)
	$(BIN)/python bench/serve.py
	$(BIN)/python bench/ingest_speed.py --limit-docs 1000
	$(BIN)/python bench/scale.py

clean:
	rm -rf $(VENV) var .pytest_cache .mypy_cache .ruff_cache
