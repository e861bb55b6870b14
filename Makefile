# masklab: two set-up commands on a fresh machine with Python 3.11 and make: `make demo` and `make test`.
SHELL  := /bin/bash
PYTHON ?= python3.11
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed

.PHONY: install demo test bench lint clean

$(VENV)/bin/python:
	@command -v $(PYTHON) >/dev/null 2>&1 || { echo "need $(PYTHON) on PATH (or run: make PYTHON=python3 ...)"; exit 2; }
	$(PYTHON) -m venv $(VENV)

$(STAMP): pyproject.toml constraints.txt | $(VENV)/bin/python
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -c constraints.txt -e '.[dev]'
	@touch $(STAMP)

install: $(STAMP)

# The main job: train mdm-tiny on the embedded stdlib corpus (<= 4 CPU minutes), evaluate, infill, draw.
demo: install
	$(VENV)/bin/masklab train --recipe mdm-tiny --out runs/demo
	$(VENV)/bin/masklab eval --model runs/demo
	$(VENV)/bin/masklab generate --model runs/demo --seed 0 --png runs/demo/unmasking.png \
	  --prompt $$'def get(self, key, default=None):\n    if <mask:3> in self.data:\n        return self.<mask:4>[key]\n    return <mask:7>\n'

test: install
	$(PY) -m pytest -q

bench: install
	@for f in benchmarks/*.py; do case $$f in benchmarks/gpu_*) continue;; esac; \
	  echo "== $$f"; $(PY) $$f || exit 1; done

lint: install
	$(VENV)/bin/ruff check src tests benchmarks
	$(VENV)/bin/ruff format --check src tests benchmarks

clean:
	rm -rf runs .pytest_cache
