# The README's two commands are `make demo` and `make test`; the rest serve them or you.
PYTHON ?= python3
UV_VERSION := 0.13.8
TOOLS := $(CURDIR)/.tools
UV := $(TOOLS)/bin/uv
VENV := $(CURDIR)/.venv
BIN := $(VENV)/bin
CTLOOP_HOME ?= $(CURDIR)/.ctloop
# three workers on two cores: the integration tests spend a third of their time waiting on Airflow,
# Celery and servers (2 workers: 13.5 min, CPU 1.3 cores busy; 3 workers: 11.8 min)
PYTEST_WORKERS ?= 3
LINTED := include dags plugins tests bench
# The core packages are type-checked strictly; the Airflow wiring, the UI and devtools less so
# (Airflow's and FastAPI's decorators return untyped callables).
CORE := $(addprefix -p ctloop.,spec io data validation training evaluation gating registry scoring monitoring replay housekeeping) \
	-m ctloop.errors -m ctloop.settings -m ctloop.notifications -m ctloop.rendering -m ctloop.clock -m ctloop.timeline
EDGE := -p ctloop.orchestration -p ctloop.ui -p ctloop.devtools -m ctloop.cli
export CTLOOP_HOME
export UV_PYTHON_DOWNLOADS := never

.PHONY: setup system-deps demo test lint typecheck airflow mlflow-ui bench clean

$(UV):
	$(PYTHON) -m venv $(TOOLS)
	$(TOOLS)/bin/python -m pip install --quiet --disable-pip-version-check uv==$(UV_VERSION)

$(VENV)/.synced: pyproject.toml uv.lock | $(UV)
	$(UV) sync --frozen --compile-bytecode --python $(PYTHON)
	touch $@

setup: $(VENV)/.synced  ## the virtualenv, exactly as uv.lock pins it, and ctloop's own bytecode
	@# uv compiles the installed packages, not the editable ctloop; without bytecode every DAG file
	@# parse compiles ctloop's modules from source (where PYTHONDONTWRITEBYTECODE is set).
	$(BIN)/python -m compileall -q include

system-deps:  ## the Debian packages the tests need (postgresql, chromium, redis), installed only when missing
	bash scripts/install-system-deps.sh

demo: setup  ## the whole loop on the embedded default (SQLite, local files under CTLOOP_HOME)
	$(BIN)/ctloop demo

test: setup system-deps lint typecheck  ## the whole test suite, after style and type checks
	$(BIN)/pytest -n $(PYTEST_WORKERS) --dist loadgroup --durations=25  # the slowest, to keep the suite fast

lint: setup  ## ruff: lint rules and formatting (fails on any difference)
	$(BIN)/ruff check $(LINTED)
	$(BIN)/ruff format --check $(LINTED)

typecheck: setup  ## mypy: strict on the core packages
	$(BIN)/mypy --strict $(CORE)
	$(BIN)/mypy $(EDGE)

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
