# Two commands do all the set-up on a fresh machine:
#   make demo   install, load demo jobs into the embedded Postgres, run a full backfill
#   make test   install and run the tests
PYTHON ?= python3
VENV ?= .venv
JOBS ?= 2000
HOST ?= 127.0.0.1
PORT ?= 3000
BIN := $(VENV)/bin
export DAGSTER_HOME ?= $(CURDIR)

.PHONY: install demo backfill test ui bench clean-data

install: $(VENV)/.installed

# torch first and from the constraints file: it pins the CPU build that lies on this machine;
# installed after sentence-transformers, pip would pick a multi-GB CUDA build.
$(VENV)/.installed: pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -c constraints.txt torch
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -c constraints.txt -e '.[test]'
	$(BIN)/python -c "import jobping_pipeline.definitions, dagster_postgres, torch, sentence_transformers"
	touch $@

demo: install
	$(BIN)/jobping-pipeline demo-data --jobs $(JOBS)
	$(BIN)/jobping-pipeline backfill

backfill: install
	$(BIN)/jobping-pipeline backfill

test: install
	$(BIN)/python -m pytest

ui: install
	$(BIN)/dagster dev -h $(HOST) -p $(PORT)

clean-data:
	rm -rf .jobping storage logs history schedules
