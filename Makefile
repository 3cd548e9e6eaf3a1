# Two commands set everything up on a fresh machine: `make demo` and `make test`.
# Both install exactly requirements.lock (every package pinned, with hashes) into .venv.
PYTHON ?= python3
VENV := .venv
BIN := $(CURDIR)/$(VENV)/bin
LOCK := requirements.lock
LOCK_PYTHON := 3.11
export PATH := $(BIN):$(PATH)
export GX_ANALYTICS_ENABLED := false
export MLFLOW_DISABLE_TELEMETRY := true
export DO_NOT_TRACK := 1
unexport PYTHONDONTWRITEBYTECODE

.PHONY: demo test install lock clean-venv mlflow-ui clean-outputs

# The lock is resolved for CPython $(LOCK_PYTHON) on Linux x86_64 with the CPU build of torch 2.13.0.
# uv (itself pinned in the lock, installed first by pip with its hashes) installs the lock: the whole
# install takes ~14 s (pip took ~105 s, compiling all bytecode). No bytecode is compiled at install
# (compiling all 22,000 modules took 35 s, most of them never imported): Python writes each module's
# .pyc into .venv the first time it is imported, and every later process reuses it. That needs
# PYTHONDONTWRITEBYTECODE off in make's commands (it is set on some machines, CI among them: every
# stage process would then recompile torch, ~8 s each).
# `uv pip sync` removes whatever the lock does not name, so an old .venv ends up exactly like a new
# one. uv reads no pip.conf: a local wheel folder (PIP_FIND_LINKS, e.g. the CPU torch wheel) is passed on.
UV_FIND_LINKS := $(foreach d,$(PIP_FIND_LINKS),--find-links $(d))
$(VENV)/.installed: $(LOCK) pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	@$(BIN)/python -c 'import sys; v = "%d.%d" % sys.version_info[:2]; sys.exit(0 if v == "$(LOCK_PYTHON)" else \
		f"$(LOCK) is for Python $(LOCK_PYTHON), .venv has {v}: make clean-venv, then PYTHON=python$(LOCK_PYTHON) make ...")'
	awk '/^uv==/ {on = 1} on {print} on && !/\\$$/ {exit}' $(LOCK) > $(VENV)/uv-requirement.txt
	$(BIN)/python -m pip install -q --require-hashes --no-deps -r $(VENV)/uv-requirement.txt
	$(BIN)/uv pip sync -q --python $(BIN)/python --require-hashes $(UV_FIND_LINKS) $(LOCK)
	$(BIN)/uv pip install -q --python $(BIN)/python --no-deps --no-build-isolation -e .
	$(BIN)/uv pip check -q --python $(BIN)/python
	touch $@

install: $(VENV)/.installed

# Re-resolve the lock from pyproject.toml's ranges. `make lock UPGRADE=sqlalchemy` moves one package;
# `make lock UPGRADE=--all` moves everything. Commit requirements.lock with the change that needed it.
lock: $(VENV)/.installed
	$(BIN)/pip-compile -q --extra dev --generate-hashes --allow-unsafe --strip-extras \
		--no-emit-index-url --no-emit-find-links -o $(LOCK) \
		$(if $(filter --all,$(UPGRADE)),--upgrade,$(foreach p,$(UPGRADE),--upgrade-package $(p))) pyproject.toml

clean-venv:                        ## remove the virtual environment (the next make re-creates it from the lock)
	rm -rf $(VENV)

# LFMCDM_WARM_START=1: the stages run in forks of one process that has torch, diffusers, MLflow and GX
# imported (lfmcdm/warm.py), instead of importing them eleven times.
demo: $(VENV)/.installed          ## run the whole pipeline on the phantom dataset via DVC
	LFMCDM_WARM_START=1 LFMCDM_PIPELINE_ID=demo-$$(date +%Y%m%d-%H%M%S) dvc repro
	dvc status
	dvc metrics show
	@echo "MLflow UI:  make mlflow-ui   (runs + registered models in ./mlflow.db)"

test: $(VENV)/.installed
	pytest $(PYTEST_ARGS)

mlflow-ui: $(VENV)/.installed
	mlflow ui --backend-store-uri sqlite:///mlflow.db --port $(or $(PORT),5000)

clean-outputs:                     ## remove pipeline outputs (keeps the venv)
	rm -rf data/raw/phantom data/interim/* data/processed/* data/synthetic/* models checkpoints metrics reports mlflow.db mlartifacts dvc.lock
	touch data/interim/.gitkeep data/processed/.gitkeep data/synthetic/.gitkeep
