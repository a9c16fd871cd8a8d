# The two commands of the README: `make tour` and `make test`.
# Both create .venv with `python3 -m venv` and install sockwire with its dev
# extras when the venv is missing, broken, or older than pyproject.toml.

PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: tour test lint typecheck unit soak bench clean venv

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

soak: $(STAMP)
	$(BIN)/pytest -m soak

clean:
	rm -rf $(VENV) build dist .mypy_cache .ruff_cache .hypothesis
