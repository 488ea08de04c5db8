# The README's two commands: `make run` and `make test`.  Each creates its
# own virtualenv in .venv if it is missing, so only Python and make are needed.

PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
PORT ?= tcp:1234
# Compat mode keeps the flat-layout dropin in twisted/plugins visible to twistd.
EDITABLE := --config-settings editable_mode=compat -e

.PHONY: run test test-trial test-pytest lint typing docs bench clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

$(VENV)/.installed-run: $(BIN)/python setup.cfg pyproject.toml
	$(BIN)/pip install --quiet $(EDITABLE) .
	touch $@

$(VENV)/.installed-test: $(BIN)/python setup.cfg pyproject.toml
	$(BIN)/pip install --quiet $(EDITABLE) '.[test,docs,dev]'
	touch $@ $(VENV)/.installed-run

run: $(VENV)/.installed-run
	$(BIN)/twistd --nodaemon --pidfile= random-integers --port $(PORT)

test: $(VENV)/.installed-test
	$(MAKE) test-trial test-pytest lint typing docs

test-trial: $(VENV)/.installed-test
	$(BIN)/trial --temp-directory=$(VENV)/_trial_temp twisted_streaming

test-pytest: $(VENV)/.installed-test
	$(BIN)/pytest -q -p no:cacheprovider twisted_streaming

lint: $(VENV)/.installed-test
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typing: $(VENV)/.installed-test
	$(BIN)/mypy

docs: $(VENV)/.installed-test
	$(BIN)/sphinx-build -W --keep-going -q -b html docs docs/_build/html

bench: $(VENV)/.installed-test
	$(BIN)/pip install --quiet '.[bench]'
	$(BIN)/python -m bench

clean:
	rm -rf $(VENV) docs/_build build *.egg-info _trial_temp*
