# The two commands of the README: `make run` (the main job on the embedded default) and `make test`.
# Each creates .venv with Python 3.11+ if it is missing.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
# Test processes: most tests wait on services and subprocesses, so three share two cores well.
# Each test file stays in one process (its tests keep their order). `make test PYTEST_ARGS=` runs serially.
PYTEST_ARGS ?= -n 3 --dist loadfile

.PHONY: run test lint check bench clean

$(BIN)/.installed: pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit("Python 3.11+ is required, found " + sys.version.split()[0]) if sys.version_info < (3, 11) else None'
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	@touch $@

run: $(BIN)/.installed
	$(BIN)/lifecycle demo

test: $(BIN)/.installed
	$(BIN)/ruff check .
	$(BIN)/python -m pytest $(PYTEST_ARGS)

lint: $(BIN)/.installed
	$(BIN)/ruff check .

# Lint, formatting and the type check ([tool.mypy] in pyproject.toml: lifecycle/ and tasks/).
check: $(BIN)/.installed
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

bench: $(BIN)/.installed
	$(BIN)/python -m bench.run

clean:
	rm -rf $(VENV) outbox calendar_exports/customers calendar_exports/products .lifecycle lifecycle.db*
