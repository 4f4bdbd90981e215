# Everything runs from a project-local virtual environment, created on first use.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: test test-deps demo lint typecheck diagrams bench clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test]'
	touch $(STAMP)

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: $(STAMP)
	$(BIN)/mypy

# System packages the tests need (Debian's XRootD server); a no-op once installed.
test-deps:
	scripts/install-test-deps.sh

test: lint typecheck test-deps
	$(BIN)/pytest

demo: $(STAMP)
	$(BIN)/failover demo

diagrams: $(STAMP)
	$(BIN)/python -m states.diagrams

# Every benchmark, one combined table (rclone from Debian when it can be installed). The project's
# bytecode is compiled first, as installing a wheel does: the CLI's start-up is then what a user sees,
# even where PYTHONDONTWRITEBYTECODE keeps an editable install from caching it.
bench: $(STAMP) test-deps
	bash scripts/install-bench-deps.sh || echo "bench: rclone could not be installed; its figures print n/a"
	$(BIN)/python -m compileall -q failover fsm persistence states
	$(BIN)/python bench/run_all.py

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
