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

.PHONY: install demo backfill test ui bench bench-scale bench-gpu clean-data

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

# Figures, not assertions: (a) bare model, (b) pipeline, (c) old system side by side, compute
# paths with recall@10, writes with an HNSW index.
bench: install
	$(BIN)/python benchmarks/throughput.py --jobs 2000 --quality --hnsw --index-rows 3000

# Everything that is not the model on 1,000,000 jobs, and peak RSS of runs by chunk size.
bench-scale: install
	$(BIN)/python benchmarks/throughput.py --jobs 0 --scale 1000000 --run-rss 1000,5000

# On a CUDA machine: bigger batches and chunks keep the GPU busy.
bench-gpu: install
	$(BIN)/python benchmarks/throughput.py --jobs 20000 --chunk-size 5000 --batch-size 256 --index-rows 20000

clean-data:
	rm -rf .jobping storage logs history schedules
