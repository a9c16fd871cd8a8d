# The two commands of the README: `make tour` and `make test`.
# Both create .venv with `python3 -m venv` and install sockwire with its dev
# extras when the venv is missing, broken, or older than pyproject.toml.

PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: tour test lint typecheck unit soak fuzz fuzz-seed bench clean venv

venv: $(STAMP)

$(STAMP): pyproject.toml
	@if ! $(BIN)/python -c 'import sys' >/dev/null 2>&1; then \
		rm -rf $(VENV); $(PYTHON) -m venv $(VENV); fi
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	@touch $(STAMP)

tour: $(STAMP)
	$(BIN)/sockwire tour

test: lint typecheck unit

lint: $(STAMP)
	$(BIN)/ruff check src tests examples tools
	$(BIN)/ruff format --check src tests examples tools

typecheck: $(STAMP)
	$(BIN)/mypy --strict src examples

unit: $(STAMP)
	$(BIN)/pytest

# Benchmarks: peers are installed when missing (pyzmq via pip, socat via apt as root).
bench: $(STAMP)
	$(BIN)/python -c 'import zmq' 2>/dev/null || $(BIN)/python -m pip install --quiet '.[bench]'
	@command -v socat >/dev/null || { [ "$$(id -u)" = 0 ] && apt-get install -y -qq socat >/dev/null; } || \
		echo "socat missing: the relay suite will report it as missing"
	@$(BIN)/sockwire bench $(BENCH_ARGS)

# The reliability battery (tests/reliability, README "Reliability"): the fast tier
# runs in `make test`; `make soak` runs the full numbers (marker soak), then the
# whole fast suite 3 times in random order (row H); `make fuzz` runs every
# fuzz target FUZZ_RUNS times under atheris (row R2; findings land in .fuzz/).
FUZZ_RUNS ?= 1000000

soak: $(STAMP)
	$(BIN)/pytest -m soak
	@for round in 1 2 3; do \
		echo "H: the suite in random order, round $$round"; \
		$(BIN)/pytest -q -p random_order --random-order-bucket=global || exit 1; \
	done

fuzz: $(STAMP)
	@mkdir -p .fuzz
	@for target in $$($(BIN)/python tools/fuzz.py list); do \
		$(BIN)/python tools/fuzz.py run $$target $(FUZZ_RUNS) > .fuzz/$$target.log 2>&1 \
			|| { tail -60 .fuzz/$$target.log; echo "R2 $$target: FINDING (.fuzz/$$target.log)"; exit 1; }; \
		echo "R2 $$target: $$(sed -n 's/^stat::number_of_executed_units: *//p' .fuzz/$$target.log) execs," \
			"$$(sed -n 's/^stat::new_units_added: *//p' .fuzz/$$target.log) new inputs, 0 findings"; \
	done

# the seed corpus from real data, in a private network namespace (root)
fuzz-seed: $(STAMP)
	unshare -n sh -c 'ip link set lo up && $(BIN)/python tools/fuzz.py seed'

clean:
	rm -rf $(VENV) build dist .mypy_cache .ruff_cache .hypothesis .fuzz
