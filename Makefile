# aeops — `make repro` runs the pipeline, `make test` the tests; both set everything up first.
SHELL := /bin/bash
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
export PATH := $(CURDIR)/$(VENV)/bin:$(PATH)
PORT ?= 5000

.DEFAULT_GOAL := help
.PHONY: help setup repro lint test test-fast bench ui report compare promote serve clean

help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | sed 's/$$(PORT)/$(PORT)/' | awk -F':.*## ' '{printf "  make %-9s %s\n", $$1, $$2}'

# CPU torch (the pinned wheel) unless an NVIDIA GPU is present; then pip picks a CUDA build of torch>=2.3.
# The stamp records the checkout the venv was made for and a hash of the files it was made from. A .venv
# that links to another checkout's venv (one venv shared across worktrees) is never reinstalled from here:
# `pip install -e .` would re-point the other checkout's `aeops` at this one. Same dependencies: it is
# used as it is; other dependencies: one line with the fix.
DEPS_HASH = $(shell cat pyproject.toml constraints.txt 2>/dev/null | sha256sum | cut -c1-16)
$(STAMP): pyproject.toml constraints.txt
	@owner=$$(sed -n 1p $(STAMP) 2>/dev/null); made=$$(sed -n 2p $(STAMP) 2>/dev/null); \
	if [ -e $(VENV) ] && [ "$$(realpath $(VENV))" != "$$(realpath $(CURDIR))/$(VENV)" ] && [ "$$owner" != "$(CURDIR)" ]; then \
	  venv=$$(realpath $(VENV)); \
	  if [ "$$made" != "$(DEPS_HASH)" ]; then \
	    echo "error: $(VENV) links to $$venv, set up by $${owner:-another checkout} from other pyproject.toml/constraints.txt; update it there (rm $$venv/.installed; make setup), or replace the link (rm $(VENV)) to give this checkout its own venv" >&2; exit 2; fi; \
	  echo "make: $(VENV) is shared with $$owner (same dependencies; its aeops runs that checkout's src/)" >&2; \
	else \
	  set -e; set -x; \
	  test -x $(PY) || python3 -m venv $(VENV); \
	  if command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi -L >/dev/null 2>&1; then \
	    grep -v '^torch==' constraints.txt > $(VENV)/constraints.txt; \
	  else cp constraints.txt $(VENV)/constraints.txt; fi; \
	  $(PY) -m pip install -q -c $(VENV)/constraints.txt torch; \
	  $(PY) -m pip install -q -c $(VENV)/constraints.txt -e '.[dev]'; \
	  printf '%s\n%s\n' "$(CURDIR)" "$(DEPS_HASH)" > $@; \
	fi

setup: $(STAMP) ## create .venv with the pinned dependencies and initialise DVC
	@test -d .dvc || { $(VENV)/bin/dvc init -q $$(git rev-parse --git-dir >/dev/null 2>&1 || echo --no-scm) \
	  && $(VENV)/bin/dvc config core.analytics false && $(VENV)/bin/dvc config core.check_update false; }

repro: setup ## run the DVC pipeline (prepare → tune → train → evaluate → register) on params.yaml
	dvc repro
	@echo
	@echo "metrics: metrics/evaluate.json, metrics/train.json   (dvc metrics show)"
	@echo "plots:   plots/evaluate/                              (dvc plots show → dvc_plots/index.html)"
	@echo "report:  reports/<run id>.html, offline                (make report prints its path)"
	@echo "MLflow:  mlflow.db + mlartifacts/                     (make ui → http://127.0.0.1:$(PORT))"
	@echo "model:   registry/registered.json (alias challenger)  (make promote, then make serve)"

# Test files run in parallel (pytest-xdist, one file per worker at a time: module fixtures stay whole),
# the two README journeys first; `TEST_WORKERS=1 make test` runs them one after another in one process.
# 3 workers on 2 cores: the journeys wait on servers and subprocesses, and a third worker fills that time
# (measured on 2 cores: 410 s with 3 workers, where 2 took 654 s; 581-626 s with 3 on a slower 2-core machine).
TEST_WORKERS ?= 3
XDIST = $(if $(filter 1,$(TEST_WORKERS)),-p no:xdist,-n $(TEST_WORKERS) --dist loadfile --no-loadscope-reorder)
# Intra-op threads per test process: the cores shared out among the workers (at least 1). Each torch process
# otherwise spins threads over every core, and the workers and their subprocesses slow each other down:
# a fresh clone on 2 cores took 643 s with torch's default, 518 s with 1 thread (273 tests both times).
TEST_THREADS ?= $(shell n=$$(( $$(nproc) / $(TEST_WORKERS) )); echo $$(( n > 0 ? n : 1 )))
THREADS = OMP_NUM_THREADS=$(TEST_THREADS) MKL_NUM_THREADS=$(TEST_THREADS)

lint: setup ## ruff (src, tests, benchmarks, pipelines) and mypy (src); config in pyproject.toml
	$(VENV)/bin/ruff check src tests benchmarks pipelines
	$(VENV)/bin/mypy src/aeops

test: setup lint ## run every test (the README journeys, DDP and PostgreSQL included; ≤ 10 min on 2 cores)
	$(THREADS) $(PY) -m pytest $(XDIST) --durations=40

test-fast: setup lint ## the inner loop: every test not marked slow
	$(THREADS) $(PY) -m pytest $(XDIST) -m "not slow"

bench: setup ## run the benchmarks (benchmarks/results/*.json + SUMMARY.md; ~7 h on 2 cores)
	for b in $(filter-out benchmarks/summarize.py,$(wildcard benchmarks/*.py)); do echo "== $$b"; $(PY) $$b || exit 1; done
	$(PY) benchmarks/summarize.py

promote: setup ## move alias production to the challenger if not worse (ARGS="--force", "--rollback", "--version N")
	aeops promote $(ARGS)

serve: setup ## serve models:/<register.model_name>@production on 127.0.0.1 (port: serve.port or AEOPS_SERVE_PORT)
	aeops serve $(ARGS)

# One server process (MLflow's default is 4): a local UI has one user, and it starts in half the time. No job runner:
# MLflow 3 starts huey consumer processes for its GenAI jobs, which aeops never submits (about 3.5 CPU-s each).
ui: setup ## MLflow UI on 127.0.0.1:$(PORT) (opens the model-training view)
	MLFLOW_SERVER_ENABLE_JOB_EXECUTION=false mlflow ui --app-name aeops --backend-store-uri sqlite:///mlflow.db --host 127.0.0.1 --port $(PORT) --workers 1

report: setup ## print the path of the current model's offline HTML report (written by evaluate)
	@aeops report

compare: setup ## training runs side by side: AUROC vs kNN distance, recon MSE, DVC experiment, commit
	@aeops compare

clean: ## remove generated outputs (keeps .venv, mlflow.db and the DVC cache)
	rm -rf data/prepared models plots/evaluate dvc_plots tune/best_params.json tune/plots registry reports
