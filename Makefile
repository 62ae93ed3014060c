# cellnb: the two commands of the README.
#   make book   -> venv + install + every notebook at PROFILE (auto: full on CUDA, quick on CPU) + HTML book
#   make test   -> venv + install + pytest (unit tests, notebooks at smoke, book build, browser check)
#   make gpu-wheels [GPU_DATA=1] -> .whl/ (+ .gpu_data/) for tools/gpu_full.sh on a GPU machine without pip
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
PROFILE ?= auto
# Real counting data (vgg_cells/, mbm/): the sibling shared/data folder when present, else none.
DATA_ROOT ?= $(wildcard ../shared/data)
ONLY ?=
# Parallel notebooks (threads split so jobs x threads <= cores) and re-execution despite the cache:
# FORCE=all, or FORCE="ssrnet comparison".
# Default: one job per core, at most 4 (the comparison runs after the rest).
JOBS ?= $(shell n=$$(nproc 2>/dev/null || echo 1); [ $$n -gt 4 ] && n=4; echo $$n)
FORCE ?=
STAMP := $(VENV)/.installed-stamp
SUMMARY := _build/reproduce-summary.txt

.PHONY: env results tables book test clean help gpu-wheels gpu-full

help:
	@sed -n '2,4p' Makefile

$(STAMP): requirements.txt constraints.txt pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	set -o pipefail; $(PY) -m pip install -q --disable-pip-version-check -r requirements.txt -c constraints.txt \
	  2>&1 | { grep -v "is ignored: it is neither a file nor a directory" || true; }
	# the real nuclei of ndev-sampledata: its declared dependencies (bioio) are not needed to read its TIFFs
	set -o pipefail; $(PY) -m pip install -q --disable-pip-version-check --no-deps ndev-sampledata==0.0.3 \
	  2>&1 | { grep -v "is ignored: it is neither a file nor a directory" || true; }
	$(PY) -m pip install -q --disable-pip-version-check --no-deps --no-build-isolation -e .
	$(PY) -m cellnb.tvfix
	@touch $(STAMP)

env: $(STAMP)

# Regenerate results (continues past a failing notebook, then fails at the end).
results: env
	@mkdir -p _build
	set -o pipefail; $(PY) -m cellnb.reproduce --profile $(PROFILE) --jobs $(JOBS) \
	  $(if $(DATA_ROOT),--data-root $(DATA_ROOT)) $(if $(ONLY),--only $(ONLY)) \
	  $(if $(FORCE),--force $(filter-out all,$(FORCE))) | tee $(SUMMARY)
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

# Wheels the GPU machine lacks (Python 3.12, no package index there) -> .whl/ (ignored); with
# GPU_DATA=1 also .gpu_data/ (hard links to DATA_ROOT, ignored). Then, there: bash tools/gpu_full.sh
gpu-wheels: env
	$(PY) tools/gpu_wheels.py 2>&1 | { grep -v "is ignored: it is neither a file nor a directory" || true; }
	@if [ -n "$(GPU_DATA)" ]; then test -d "$(DATA_ROOT)" || { echo "GPU_DATA=1 needs DATA_ROOT"; exit 2; }; \
	  rm -rf .gpu_data; cp -rl "$(DATA_ROOT)" .gpu_data 2>/dev/null || cp -r "$(DATA_ROOT)" .gpu_data; \
	  echo ".gpu_data: $$(du -sh .gpu_data | cut -f1)"; fi
	@echo "to carry: .whl $$(du -sh .whl | cut -f1)$$(test -d .gpu_data && echo ", .gpu_data $$(du -sh .gpu_data | cut -f1)"); working tree $$(git ls-files -z | xargs -0 du -cb 2>/dev/null | tail -1 | cut -f1) bytes"

# On the GPU machine (what the device tool runs): offline install, CUDA tests, every chapter at full.
gpu-full:
	bash tools/gpu_full.sh

clean:
	rm -rf _build book/executed
