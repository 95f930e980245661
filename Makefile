# Two commands do the whole setup on a fresh machine:
#   make book   -> .venv, install, build the book at STAR_SCALE=cpu (real data, minutes per chapter)
#   make test   -> .venv, install, pytest + nbval over book/ at STAR_SCALE=smoke
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.star-installed
BOOK_FLAGS ?= -W -n --keep-going
export JAX_PLATFORMS ?= cpu
export MPLBACKEND ?= Agg
export PYTHONHASHSEED ?= 0

.PHONY: help setup sysdeps data book book-smoke test test-py test-nb bench clean

help:
	@echo "make book   build the book (STAR_SCALE=cpu by default)"
	@echo "make test   unit/property tests + nbval over book/ at STAR_SCALE=smoke"
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
# keeps each test module (and each notebook's cells, which share one kernel) in a single worker, in order.
PYTEST_WORKERS ?= 2
XDIST := $(if $(filter-out 0 1,$(PYTEST_WORKERS)),-n $(PYTEST_WORKERS) --dist loadfile,)

test-py: setup sysdeps
	STAR_SCALE=smoke $(PY) -m pytest tests -q -p no:cacheprovider $(XDIST) --durations=15

test-nb: setup sysdeps
	@if ls book/*.ipynb >/dev/null 2>&1; then \
	  STAR_SCALE=smoke $(PY) -m pytest --nbval-lax book -q -p no:cacheprovider $(XDIST); \
	else echo "no notebooks in book/"; fi

test: test-py test-nb

bench: setup
	$(PY) bench/nqm.py
	$(PY) bench/optim_step.py
	$(PY) bench/pes.py
	$(PY) bench/ood_tuning.py

clean:
	rm -rf _build .pytest_cache
