# The two commands of the README: `make run` and `make test`. Everything CI needs is here.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
HEADWATER_HOME ?= $(CURDIR)/.headwater

.PHONY: run test setup lint bench clean

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

test: setup
	$(BIN)/ruff check .
	$(BIN)/mypy scheduler webui
	$(BIN)/python -m pytest

lint: setup
	$(BIN)/ruff check .
	$(BIN)/mypy scheduler webui

bench: setup
	$(BIN)/python -m bench

clean:
	rm -rf $(VENV) .headwater .pytest_cache .ruff_cache
