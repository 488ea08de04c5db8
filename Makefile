# The README's two commands: `make run` and `make test`.  Each creates its
# own virtualenv in .venv if it is missing, so only Python and make are needed.

PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
PORT ?= tcp:1234
# Compat mode keeps the flat-layout dropin in twisted/plugins visible to twistd.
EDITABLE := --config-settings editable_mode=compat -e

.PHONY: run test test-trial test-pytest test-examples test-wheel curl haproxy tar socat lint typing docs bench clean

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

# The package's suite runs once with trial and once with pytest, from the
# wheel (test-wheel), not from this checkout: what users install is tested.
test: $(VENV)/.installed-test
	$(MAKE) lint typing docs test-examples test-wheel

# The package's suite against this checkout (editable install), for a quick
# run while working; `make test` runs it from the wheel instead.
test-trial: $(VENV)/.installed-test
	$(BIN)/trial --temp-directory=$(VENV)/_trial_temp twisted_streaming

test-pytest: $(VENV)/.installed-test
	$(BIN)/pytest -q -p no:cacheprovider twisted_streaming

# The examples' tests: in the checkout only, as the examples are.  The
# package `tests` in examples/ is found from there.
test-examples: $(VENV)/.installed-test curl tar
	cd examples && $(abspath $(BIN))/python -m twisted.trial \
	    --temp-directory=$(abspath $(VENV))/_trial_temp_examples tests
	$(BIN)/pytest -q -p no:cacheprovider examples/tests

# Build the wheel, install it into fresh virtualenvs outside the checkout,
# and run the package's suite there (see .ci/test-wheel).
test-wheel: $(VENV)/.installed-test curl haproxy tar
	PYTHON=$(PYTHON) .ci/test-wheel $(BIN)/python

# The peers the tests and benchmarks run against: curl (the twisted.web
# tests' client), HAProxy (the PROXY protocol tests' receiver), GNU tar (the
# tar tests' peer), socat (the tar benchmark's anchor).  Installed as root
# where apt-get can, as CI does; the suite must not skip their tests there.
curl haproxy tar socat:
	@command -v $@ >/dev/null && { [ $@ != tar ] || tar --version | grep -q 'GNU tar'; } || { \
	    if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	        apt-get update -q && apt-get install -y -q --no-install-recommends $@; \
	    else \
	        echo "make needs $@ (GNU tar for tar): apt-get install $@" >&2; exit 1; \
	    fi; }

lint: $(VENV)/.installed-test
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typing: $(VENV)/.installed-test
	$(BIN)/mypy

docs: $(VENV)/.installed-test
	$(BIN)/sphinx-build -W --keep-going -q -b html docs docs/_build/html

bench: $(VENV)/.installed-test curl tar socat
	$(BIN)/pip install --quiet $(EDITABLE) '.[bench]'
	$(BIN)/python -m bench

clean:
	rm -rf $(VENV) docs/_build build *.egg-info _trial_temp*
