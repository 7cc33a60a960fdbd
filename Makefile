# The two commands of the README: `make run` (the main job on the embedded default) and `make test`.
# Each creates .venv with Python 3.11+ if it is missing.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
# Test processes: most tests wait on services and subprocesses, so three share two cores well.
# Each test file stays in one process (its tests keep their order); the 25 slowest tests are listed at the end.
# `make test PYTEST_ARGS=` runs serially.
PYTEST_ARGS ?= -n 3 --dist loadfile --durations=25

.PHONY: run test lint check bench clean messages compile-messages new-language

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

# Translations (lifecycle/i18n.py): extract every message into the template catalog and merge it into
# each language's catalog; then translate the new or fuzzy entries (tests/test_i18n.py fails until done).
# t(...): the web pages' translator; the *_in functions take the locale first (lifecycle/i18n.py).
KEYWORDS := -k t -k gettext_in:2 -k ngettext_in:2,3 -k pgettext_in:2c,3
PYBABEL_EXTRACT := $(BIN)/pybabel -q extract -F babel.cfg $(KEYWORDS) --no-location --sort-output \
	--add-comments=TRANSLATORS: --project=lifecycle --msgid-bugs-address=lifecycle@vendor.example
messages: $(BIN)/.installed
	$(PYBABEL_EXTRACT) -o lifecycle/locale/messages.pot .
	$(BIN)/pybabel update -i lifecycle/locale/messages.pot -d lifecycle/locale --no-wrap --ignore-obsolete

# A new language: `make new-language LOCALE=fr` writes lifecycle/locale/fr/LC_MESSAGES/messages.po to translate.
new-language: messages
	@test -n "$(LOCALE)" || (echo "usage: make new-language LOCALE=fr" >&2; exit 2)
	$(BIN)/pybabel init -i lifecycle/locale/messages.pot -d lifecycle/locale -l $(LOCALE) --no-wrap

# Optional: the .mo files (generated, not in git). Without them a catalog is compiled in memory on first use.
compile-messages: $(BIN)/.installed
	$(BIN)/pybabel compile -d lifecycle/locale --statistics

bench: $(BIN)/.installed
	$(BIN)/python -m bench.run

clean:
	rm -rf $(VENV) lifecycle/locale/*/LC_MESSAGES/*.mo lifecycle/locale/messages.pot outbox calendar_exports/customers calendar_exports/products .lifecycle lifecycle.db*
