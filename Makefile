# Two entry points do all set-up on a fresh machine: `make demo` (the main job) and `make test`.
VENV ?= .venv
PYTHON ?= python3
BIN := $(VENV)/bin
STAMP := $(VENV)/.edgecnn-installed

.PHONY: demo test clean zoo-graphs

# constraints.txt pins what pyproject.toml's ranges allow to the tested set (torch 2.13.0, CPU build).
$(STAMP): pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -c constraints.txt -e '.[dev]'
	touch $(STAMP)

# WEIGHTS=path/to/checkpoint.pt exports your trained weights instead of the seeded random ones.
WEIGHTS ?=
MODEL ?= mobilenet

demo: $(STAMP)
	$(BIN)/edgecnn list
	$(BIN)/edgecnn info $(MODEL)
	$(BIN)/edgecnn export $(MODEL) --fp16 --int8 $(if $(WEIGHTS),--weights $(WEIGHTS))
	$(BIN)/edgecnn profile --device jetson

# Two pytest-xdist workers, one per core (tests/conftest.py pins them); TEST_WORKERS=0 runs in one process.
TEST_WORKERS ?= 2

# The formatter, the linter and the layer contracts (docs/architecture.md) run first: each takes seconds.
test: $(STAMP)
	$(BIN)/ruff format --check --quiet .
	$(BIN)/ruff check --quiet .
	$(BIN)/lint-imports --no-logo
	$(BIN)/python -m pytest -p randomly -n $(TEST_WORKERS) --dist worksteal

# Rebuild the zoo graphs shipped with the package after editing a model or the exporter (tests fail while stale).
zoo-graphs: $(STAMP)
	$(BIN)/python scripts/build_zoo_graphs.py

clean:
	rm -rf $(VENV) build *.egg-info
