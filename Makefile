# Proofroom: `make demo` and `make test` are the two commands (see README).
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip
# The CPU build of torch that lies on these machines; install it before the project so
# the project's range (torch>=2.2,<2.15) is already met and pip pulls no CUDA build.
# Elsewhere: make test TORCH_SPEC="torch==2.13.0" TORCH_INDEX="--index-url https://download.pytorch.org/whl/cpu"
TORCH_SPEC ?= torch==2.13.0
TORCH_INDEX ?=
STAMP := $(VENV)/.installed
# Test processes (pytest-xdist): most tests wait on worker processes, servers and Redis, so
# two fill the two cores of CI. TEST_WORKERS=0 runs in one process (a debugger, -x).
TEST_WORKERS ?= 2
export HF_HUB_OFFLINE := 1
export TRANSFORMERS_OFFLINE := 1
export HF_HUB_DISABLE_TELEMETRY := 1

.PHONY: install test test-fast bench soak demo lint format clean

$(PY):
	$(PYTHON) -m venv $(VENV)

$(STAMP): pyproject.toml | $(PY)
	$(PIP) install -q --upgrade pip
	$(PY) -c "import torch" 2>/dev/null || $(PIP) install -q $(TORCH_INDEX) "$(TORCH_SPEC)"
	$(PIP) install -q -e ".[test]"
	touch $(STAMP)

install: $(STAMP) ## create .venv and install the project with its test extras

test: $(STAMP) ## the whole suite (uses REDIS_URL, else 127.0.0.1:6379, else a throwaway redis-server)
	$(PY) -m pytest -q -n $(TEST_WORKERS)

test-fast: $(STAMP) ## the suite without tests marked slow
	$(PY) -m pytest -q -n $(TEST_WORKERS) -m "not slow"

bench: $(STAMP) ## every benchmark side by side: bench/results/<date>-<host>.json and docs/benchmarks.md (under 10 min on 2 cores; BENCH_ARGS=--quick for a short run)
	$(PY) bench/run.py $(BENCH_ARGS)

soak: $(STAMP) ## 500 commands from 20 users on a real worker killed half-way, then the invariants and Redis after the TTLs (SOAK_ARGS="--commands 150 --seed 7")
	$(PY) bench/soak.py $(SOAK_ARGS)

demo: $(STAMP) ## scripted shell session on the embedded default: /imagine, progress, images, approval, export
	$(PY) -m bot.demo

lint: $(STAMP) ## ruff, and mypy on the packages
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy bot engine

format: $(STAMP)
	$(VENV)/bin/ruff check --fix .
	$(VENV)/bin/ruff format .

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache out data .proofroom
