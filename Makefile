# cellnb: the two commands of the README.
#   make book   -> venv + install + every notebook at PROFILE (auto: full on CUDA, quick on CPU) + HTML book
#   make test   -> venv + install + pytest (unit tests, notebooks at smoke, book build, browser check)
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
PROFILE ?= auto
# Real counting data (vgg_cells/, mbm/): the sibling shared/data folder when present, else none.
DATA_ROOT ?= $(wildcard ../shared/data)
ONLY ?=
STAMP := $(VENV)/.installed-stamp
SUMMARY := _build/reproduce-summary.txt

.PHONY: env results tables book test clean help

help:
	@sed -n '2,4p' Makefile

$(STAMP): requirements.txt constraints.txt pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	set -o pipefail; $(PY) -m pip install -q --disable-pip-version-check -r requirements.txt -c constraints.txt \
	  2>&1 | { grep -v "is ignored: it is neither a file nor a directory" || true; }
	$(PY) -m pip install -q --disable-pip-version-check --no-deps --no-build-isolation -e .
	$(PY) -m cellnb.tvfix
	@touch $(STAMP)

env: $(STAMP)

# Regenerate results (continues past a failing notebook, then fails at the end).
results: env
	@mkdir -p _build
	set -o pipefail; $(PY) -m cellnb.reproduce --profile $(PROFILE) \
	  $(if $(DATA_ROOT),--data-root $(DATA_ROOT)) $(if $(ONLY),--only $(ONLY)) | tee $(SUMMARY)
	$(PY) -m cellnb.tables

tables: env
	$(PY) -m cellnb.tables

book: env
	@mkdir -p _build; status=0; \
	$(MAKE) --no-print-directory results || status=$$?; \
	$(VENV)/bin/jupyter-book build . --builder html || status=$$?; \
	echo; echo "================ summary ================"; \
	sed -n '/^notebook /,$$p' $(SUMMARY) 2>/dev/null; \
	echo; echo "Open the book: file://$(CURDIR)/_build/html/index.html"; \
	exit $$status

test: env
	$(PY) -m pytest

clean:
	rm -rf _build book/executed
