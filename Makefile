# Two entry points: `make demo` (set up + main job) and `make test` (set up + whole test suite).
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.nnmend-installed
EXTRAS ?= app,verify,campaign,dev

.PHONY: setup demo test bench-quick clean

# The install order: torch first (the CPU wheel satisfies pyproject's torch>=2.1, so no CUDA build is
# pulled), then nnmend with its dependencies and every extra (pyproject.toml), then the test pins
# (requirements.txt), then the packages whose metadata would pull torchvision (--no-deps).
$(STAMP): pyproject.toml requirements.txt requirements-nodeps.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip setuptools wheel
	$(PY) -m pip install -q torch==2.13.0
	$(PY) -m pip install -q --no-build-isolation -e ".[$(EXTRAS)]"
	$(PY) -m pip install -q -r requirements.txt
	$(PY) -m pip install -q --no-deps -r requirements-nodeps.txt
	touch $(STAMP)

setup: $(STAMP)

demo: setup
	$(VENV)/bin/nnmend demo --out runs/demo

# Two pytest-xdist workers share the cores (tests/conftest.py gives each its share of threads); a file's
# tests stay on one worker, so module fixtures are built once. `$(PY) -m pytest -q` runs it serially.
TEST_WORKERS ?= 2
test: setup
	$(PY) -m pytest -q -n $(TEST_WORKERS) --dist loadfile

clean:
	rm -rf runs .pytest_cache
