# The two commands of the README. Each creates .venv from the project's files when missing.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test test-unit bench clean

$(STAMP): pyproject.toml
	test -d $(VENV) || $(PY) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e ".[test,gbt]"
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/fabray demo

test: $(STAMP)
	$(BIN)/python -m pytest -q --durations=20

test-unit: $(STAMP)
	$(BIN)/python -m pytest -q tests/unit

clean:
	rm -rf $(VENV) demo-run .pytest_cache
