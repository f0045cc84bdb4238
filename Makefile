# The two commands of the README. Each creates .venv from the project's files when missing.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
BENCH ?= bench-out
ETT_DATA ?= ../shared/data/ETTh1.csv

.PHONY: demo test test-quick test-unit bench clean chromium

$(STAMP): pyproject.toml
	test -d $(VENV) || $(PY) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e ".[test,gbt]"
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/fabray demo

# Every test (the CI's command), in three pytest-xdist workers: the integration tests in three
# groups of modules (tests/integration/_xdist_groups.py), each run in order by one worker with its
# own local Ray (tests/integration/conftest.py); the unit tests fill whichever worker is free.
# Markers in pyproject.toml: `slow` = more than a few seconds.
PYTEST_WORKERS := -n 3 --dist loadgroup
test: $(STAMP) chromium
	$(BIN)/python -m pytest -q $(PYTEST_WORKERS) --durations=20

# Chromium (Debian's package) for the zone board's browser test in tests/integration/test_feed.py,
# installed when missing (CI runs as root on a fresh machine). Never fails: without apt-get or
# root the browser test skips, saying why.
chromium:
	@command -v chromium >/dev/null 2>&1 || command -v chromium-browser >/dev/null 2>&1 || \
	  { [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1 && \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; } || \
	  echo "chromium not installed (needs apt-get as root): the board's browser test will skip"

# Every test but the slow ones (the Serve, retrain, multi-node, autoscaling, fault and job tests).
test-quick: $(STAMP)
	$(BIN)/python -m pytest -q $(PYTEST_WORKERS) -m "not slow" --durations=10

test-unit: $(STAMP)
	$(BIN)/python -m pytest -q tests/unit

# Every benchmark under benchmarks/ in its quick (smoke) mode, JSON into $(BENCH)/; each prints its
# baseline beside its figure. The full runs' commands are in the README, beside each section.
bench: $(STAMP)
	rm -rf $(BENCH) && mkdir -p $(BENCH)
	$(BIN)/python benchmarks/windows.py --source synthetic --rows 100000 --windows 20000 --rounds 1 --json $(BENCH)/windows.json
	$(BIN)/python benchmarks/train.py --quick --json $(BENCH)/train.json
	$(BIN)/python benchmarks/trainer_backend.py --rounds 3 --json $(BENCH)/trainer_backend.json
	$(BIN)/python benchmarks/lead_time.py --quick --no-progress --json $(BENCH)/lead_time.json
	$(BIN)/python examples/quickstart.py --out $(BENCH)/quickstart
	$(BIN)/python benchmarks/ensemble_search.py --run $(BENCH)/quickstart/r1 --trials 8 --seeds 2 --json $(BENCH)/ensemble_search.json
	$(BIN)/python benchmarks/serve.py --run $(BENCH)/quickstart/r1 --zoo run --requests 100 --batches 100 --json $(BENCH)/serve.json
	$(BIN)/python benchmarks/adversarial.py --work $(BENCH)/adversarial --stalled 50 --out $(BENCH)/adversarial.json
	if [ -f benchmarks/other_fab.py ]; then $(BIN)/python benchmarks/other_fab.py --out $(BENCH)/other_fab --days 3 --run --trials 4; fi
	if [ -f $(ETT_DATA) ]; then $(BIN)/python benchmarks/ett.py --data $(ETT_DATA) --horizon 96 --epochs 1 --patience 1 --quiet --json $(BENCH)/ett.json; \
	else echo "ett.py skipped: no $(ETT_DATA) (ETT_DATA=path/to/ETTh1.csv)"; fi

clean:
	rm -rf $(VENV) demo-run $(BENCH) .pytest_cache
