# The two commands of the README: `make run` and `make test`. Everything CI needs is here.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
HEADWATER_HOME ?= $(CURDIR)/.headwater

.PHONY: run test setup lint bench clean chromium

$(BIN)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $@

setup: $(BIN)/.installed

# Serve the repo's dags/ and plugins/ from a store under ./.headwater, UI on 127.0.0.1:8080.
run: setup
	HEADWATER_HOME=$(HEADWATER_HOME) $(BIN)/headwater db migrate
	HEADWATER_HOME=$(HEADWATER_HOME) \
	HEADWATER__CORE__DAGS_FOLDER=$(CURDIR)/dags \
	HEADWATER__CORE__PLUGINS_FOLDER=$(CURDIR)/plugins \
	$(BIN)/headwater standalone

# Browser tests drive Debian's chromium (never a downloaded browser build).
chromium:
	@command -v chromium >/dev/null 2>&1 || { \
		echo "installing Debian's chromium for the browser tests"; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium; }

test: setup chromium
	$(BIN)/ruff check .
	$(BIN)/mypy scheduler webui
	# Two test processes (pytest-xdist), each taking whole files: most tests wait on the
	# headwater processes they start, and every test has its own home, store, broker and ports.
	$(BIN)/python -m pytest -n 2 --dist loadfile
	# The store and end-to-end suites again on PostgreSQL (a database per test, dropped after).
	HEADWATER_TEST_DB=postgresql $(BIN)/python -m pytest -n 2 --dist loadfile \
		-p tests.prod.pgstore tests/e2e tests/store

lint: setup
	$(BIN)/ruff check .
	$(BIN)/mypy scheduler webui

bench: setup
	$(BIN)/python -m bench

clean:
	rm -rf $(VENV) .headwater .pytest_cache .ruff_cache
