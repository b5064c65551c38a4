# The README's two commands are `make demo` and `make test`; the rest serve them or you.
PYTHON ?= python3
UV_VERSION := 0.13.8
TOOLS := $(CURDIR)/.tools
UV := $(TOOLS)/bin/uv
VENV := $(CURDIR)/.venv
BIN := $(VENV)/bin
CTLOOP_HOME ?= $(CURDIR)/.ctloop
PYTEST_WORKERS ?= 2
export CTLOOP_HOME
export UV_PYTHON_DOWNLOADS := never

.PHONY: setup system-deps demo test lint airflow mlflow-ui bench clean

$(UV):
	$(PYTHON) -m venv $(TOOLS)
	$(TOOLS)/bin/python -m pip install --quiet --disable-pip-version-check uv==$(UV_VERSION)

$(VENV)/.synced: pyproject.toml uv.lock | $(UV)
	$(UV) sync --frozen --compile-bytecode --python $(PYTHON)
	touch $@

setup: $(VENV)/.synced  ## the virtualenv, exactly as uv.lock pins it

system-deps:  ## the Debian packages the tests need (postgresql, chromium, redis), installed only when missing
	bash scripts/install-system-deps.sh

demo: setup  ## the whole loop on the embedded default (SQLite, local files under CTLOOP_HOME)
	$(BIN)/ctloop demo

test: setup system-deps  ## the whole test suite
	$(BIN)/pytest -n $(PYTEST_WORKERS) --dist loadgroup

lint: setup
	$(BIN)/ruff check include dags plugins tests bench
	$(BIN)/ruff format --check include dags plugins tests bench

airflow: setup  ## the Airflow UI on the demo's state: http://127.0.0.1:8080
	eval "$$($(BIN)/ctloop env)" && $(BIN)/ctloop init && \
	  AIRFLOW__API__HOST=127.0.0.1 exec $(BIN)/airflow standalone

mlflow-ui: setup  ## the MLflow UI on the demo's state: http://127.0.0.1:5000
	eval "$$($(BIN)/ctloop env)" && exec $(BIN)/mlflow ui --host 127.0.0.1 --port 5000 \
	  --backend-store-uri "$$MLFLOW_TRACKING_URI" --default-artifact-root "$$CTLOOP_MLFLOW_ARTIFACT_ROOT"

bench: setup  ## benchmarks; each prints ratios against a baseline measured in the same run
	$(BIN)/python -m bench

clean:
	rm -rf $(CTLOOP_HOME)
