# The two entry points a newcomer uses: `make demo` and `make test`.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin

.PHONY: demo test lint fmt bench clean

$(BIN)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[dev]'
	touch $@

## demo: serve on a temporary SQLite file, collect a 10 s workload, push it, query it back (scripts/demo.sh)
demo: $(BIN)/.installed
	BIN=$(BIN) bash scripts/demo.sh

## test: lint and run the whole test suite (PostgreSQL tests skip when none is reachable, outside CI)
test: $(BIN)/.installed
	$(BIN)/ruff check resmon tests bench
	$(BIN)/pytest -q

lint: $(BIN)/.installed
	$(BIN)/ruff check resmon tests bench
	$(BIN)/ruff format --check resmon tests bench

fmt: $(BIN)/.installed
	$(BIN)/ruff check --fix resmon tests bench
	$(BIN)/ruff format resmon tests bench

clean:
	rm -rf $(VENV) *.egg-info .pytest_cache .ruff_cache .hypothesis
