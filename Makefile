# Two commands set everything up on a fresh machine: `make demo` and `make test`.
PYTHON ?= python3
VENV := .venv
BIN := $(CURDIR)/$(VENV)/bin
export PATH := $(BIN):$(PATH)
export GX_ANALYTICS_ENABLED := false
export MLFLOW_DISABLE_TELEMETRY := true
export DO_NOT_TRACK := 1

.PHONY: demo test install mlflow-ui clean-outputs

$(VENV)/.installed: pyproject.toml
	test -d $(VENV) || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q torch==2.13.0          # CPU wheel; a plain `torch` pulls a multi-GB CUDA build
	$(BIN)/pip install -q -e '.[dev]'
	touch $@

install: $(VENV)/.installed

demo: $(VENV)/.installed          ## run the whole pipeline on the phantom dataset via DVC
	LFMCDM_PIPELINE_ID=demo-$$(date +%Y%m%d-%H%M%S) dvc repro
	dvc status
	dvc metrics show
	@echo "MLflow UI:  make mlflow-ui   (runs + registered models in ./mlflow.db)"

test: $(VENV)/.installed
	pytest -q

mlflow-ui: $(VENV)/.installed
	mlflow ui --backend-store-uri sqlite:///mlflow.db --port 5000

clean-outputs:                     ## remove pipeline outputs (keeps the venv)
	rm -rf data/raw/phantom data/interim/* data/processed/* data/synthetic/* models checkpoints metrics reports mlflow.db mlartifacts dvc.lock
	touch data/interim/.gitkeep data/processed/.gitkeep data/synthetic/.gitkeep
