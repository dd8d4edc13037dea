# Two commands matter: `make demo` runs a real workflow end to end, `make test` runs every test.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
BUF_VERSION := 1.75.0

.PHONY: install demo dev test lint protos web bench security chaos clean

$(BIN)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $@

install: $(BIN)/.installed

demo: install  ## create the venv, start the embedded suite, run examples/hello.json live
	$(BIN)/conveyor run examples/hello.json --embedded --watch --param name=Conveyor

dev: install  ## every service + a worker pool in one process
	$(BIN)/conveyor dev

test: install  ## the whole suite: unit, contract, integration (embedded + distributed), e2e
	$(BIN)/pytest -q -p no:cacheprovider

security: install  ## the hostile-input suite (injection, sandbox escapes, bombs, SSRF, secrets) -> docs/reliability.md
	$(BIN)/pytest -q -p no:cacheprovider tests/security

lint: install  ## ruff, mypy, stale generated code, buf lint
	$(BIN)/ruff check conveyor tests bench scripts
	$(BIN)/mypy conveyor
	$(BIN)/python scripts/gen_protos.py --check
	npx --yes @bufbuild/buf@$(BUF_VERSION) lint
	$(BIN)/python scripts/gen_ts_types.py --check
	$(BIN)/python scripts/build_dashboard.py --check

chaos: install  ## fault injection (kill -9, Redis restart, PostgreSQL outage); CONVEYOR_CHAOS_LONG=1 for the long run
	CONVEYOR_CHAOS=1 $(BIN)/pytest -q -p no:cacheprovider -s tests/chaos

protos: install  ## regenerate Python code from protos/
	$(BIN)/python scripts/gen_protos.py

web: install  ## regenerate the dashboard's API types and rebuild it into the package (npm)
	$(BIN)/python scripts/gen_ts_types.py
	$(BIN)/python scripts/build_dashboard.py

bench: install  ## every workload vs raw Celery and Prefect 3 (BENCH_ARGS=--quick for a few minutes) -> docs/performance.md
	$(BIN)/python -m bench.compare $(BENCH_ARGS)
	$(BIN)/python -m bench.translator
	$(BIN)/python -m bench.foreach
	$(BIN)/python -m bench.event_latency
	$(BIN)/python -m bench.dashboard

clean:
	rm -rf $(VENV) .conveyor
