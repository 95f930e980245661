# Two commands do the whole setup on a fresh machine:
#   make book   -> .venv, install, build the book at STAR_SCALE=cpu (real data, minutes per chapter)
#   make test   -> .venv, install, ruff and actionlint, then pytest at STAR_SCALE=smoke: nbval over every
#                  chapter (`pytest --nbval-lax book/`), then the package's tests, the book built from those
#                  executions and every page checked in Chromium
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.star-installed
BOOK_FLAGS ?= -W -n --keep-going
export JAX_PLATFORMS ?= cpu
export MPLBACKEND ?= Agg
export PYTHONHASHSEED ?= 0

.PHONY: help setup sysdeps data book book-smoke lint test test-py test-nbval test-nb bench clean

help:
	@echo "make book   build the book (STAR_SCALE=cpu by default)"
	@echo "make test   lint, then nbval over book/ at STAR_SCALE=smoke, then the package's tests and the book's pages"
	@echo "make lint   ruff over star/, tests/, bench/, experiments/, book/ (the chapters too); actionlint over .github/workflows/"
	@echo "make bench  run the benchmarks in bench/"

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e ".[book,test]"
	touch $(STAMP)

setup: $(STAMP)

# Debian packages: the data sets (Fashion-MNIST idx files, the KJV text) and Chromium for the browser test.
DEB_PKGS := dataset-fashion-mnist bible-kjv chromium
sysdeps:
	@missing=""; \
	test -d /usr/share/datasets/fashion-mnist || missing="$$missing dataset-fashion-mnist"; \
	command -v bible >/dev/null 2>&1 || test -d /usr/share/bible-kjv || missing="$$missing bible-kjv"; \
	command -v chromium >/dev/null 2>&1 || missing="$$missing chromium"; \
	if [ -z "$$missing" ]; then exit 0; fi; \
	if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	  echo "installing Debian packages:$$missing"; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing >/dev/null; \
	else \
	  echo "NOTE: please install the Debian packages:$$missing (sudo apt-get install$$missing)"; \
	fi

data: sysdeps

# The execution cache is keyed by notebook code, not by STAR_SCALE, so each scale other than cpu builds
# into its own folder (_build/<scale>/_build/html, with its own cache); cpu builds into _build/html.
book: setup sysdeps
	scale=$${STAR_SCALE:-cpu}; out=.; [ "$$scale" = cpu ] || out=_build/$$scale; \
	STAR_SCALE=$$scale $(VENV)/bin/jupyter-book build . --path-output $$out $(BOOK_FLAGS)

book-smoke: setup sysdeps
	STAR_SCALE=smoke $(VENV)/bin/jupyter-book build . --path-output _build/smoke $(BOOK_FLAGS)

# Two workers (one per core): most of the suite's time is single-threaded XLA compilation. --dist loadfile
# keeps each test module and each chapter in a single worker, in order (nbval runs a chapter's cells in one
# kernel). First nbval over every chapter (`--nbval-lax book/`): book/conftest.py stores each chapter that
# passed in the smoke build's execution cache (SMOKE_CACHE). Then the package's tests, among them
# tests/test_browser.py, which builds the book at smoke scale from those executions (the chapters run once)
# and checks every page in Chromium while the other worker runs the rest. Both runs always run; make fails if
# either failed.
PYTEST_WORKERS ?= 2
XDIST := $(if $(filter-out 0 1,$(PYTEST_WORKERS)),-n $(PYTEST_WORKERS) --dist loadfile,)
PYTEST := STAR_SCALE=smoke $(PY) -m pytest -q -p no:cacheprovider
SMOKE_CACHE := _build/smoke/_build/.jupyter_cache/smoke
NBVAL := --nbval-lax --nbval-current-env --book-cache=$(SMOKE_CACHE)

# ruff and actionlint (both pinned in the test extra). ruff reads the chapters (book/*.ipynb) as well as the
# Python files; its configuration, including what it skips, is in pyproject.toml; actionlint's (the GPU
# runner's label) in .github/actionlint.yaml. shellcheck and pyflakes are switched off inside actionlint so
# that its verdict does not depend on what else the machine has.
lint: setup
	$(VENV)/bin/ruff check star tests bench experiments book
	$(VENV)/bin/actionlint -shellcheck= -pyflakes= .github/workflows/*.yml

test: lint sysdeps
	@$(PYTEST) $(NBVAL) book $(XDIST) --durations=5; a=$$?; \
	$(PYTEST) tests $(XDIST) --durations=15; b=$$?; \
	if [ $$a != 0 ] || [ $$b != 0 ]; then echo "make test: FAILED (nbval over book/: exit $$a; tests: exit $$b)"; exit 1; fi

test-py: setup sysdeps
	$(PYTEST) tests $(XDIST) --ignore=tests/test_browser.py

# nbval over the chapters alone, feeding the smoke build's cache (as in make test)
test-nbval: setup sysdeps
	$(PYTEST) $(NBVAL) book $(XDIST)

test-nb: setup sysdeps
	$(PYTEST) tests/test_browser.py

bench: setup
	$(PY) bench/nqm.py
	$(PY) bench/optim_step.py
	$(PY) bench/pes.py
	$(PY) bench/ood_tuning.py

clean:
	rm -rf _build .pytest_cache
