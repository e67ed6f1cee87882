# The README's two commands, on a fresh machine: `make run` and `make test`.
# Each creates .venv on first use and installs into it (the CPU build of torch first, so pip
# never reaches for a multi-GB CUDA build), then does its job. A stamp file per extra makes the
# second call skip the installation; editing pyproject.toml makes the next call reinstall.
#
#   make run                      set up, then `tlm-bot run` (needs DISCORD_TOKEN, see README)
#   make setup                    only set up (.venv with the bot), e.g. for the systemd unit
#   make test                     set up with the test extras, then the offline test suite
#   make test PYTEST_ARGS=-x      arguments for pytest
#   make run TORCH_INDEX=         take torch from your usual index (e.g. a machine with a GPU)
#   make mutation                 mutation testing of the protection modules (slow; not in CI):
#                                 kill ratio per module, see docs/MUTATION.md
#   make mutation MUTATION_ARGS="policy gate"   some modules (`--list` names them)

PYTHON ?= python3
VENV ?= .venv
TORCH ?= torch==2.13.0
# The PyTorch CPU wheels. Plain PyPI serves Linux a CUDA build of several GB.
TORCH_INDEX ?= https://download.pytorch.org/whl/cpu
PYTEST_ARGS ?=
# Mutation testing: the tool, pinned, and arguments for benchmarks/mutation.py (module names,
# --limit-min, --children). The module list lives in that script.
MUTMUT ?= mutmut==3.8.1
MUTATION_ARGS ?=
# The extras `make test` installs (CI adds ray: `make test TEST_EXTRAS=test,ray`).
TEST_EXTRAS ?= test

BIN := $(VENV)/bin
PIP := $(BIN)/python -m pip
TORCH_FROM := $(if $(TORCH_INDEX),--index-url $(TORCH_INDEX),)
# The CPU index when it answers; else the usual index (a mirror or proxy may serve CPU torch).
INSTALL_TORCH := $(PIP) install --quiet --retries 0 --timeout 15 "$(TORCH)" $(TORCH_FROM) \
	|| $(PIP) install --quiet "$(TORCH)"

.PHONY: run test mutation setup setup-test clean-venv

run: $(VENV)/.installed
	$(BIN)/tlm-bot run

test: $(VENV)/.installed-test
	HF_HUB_OFFLINE=1 $(BIN)/python -m pytest -q $(PYTEST_ARGS)

# nice: it runs for a long time on every core it is given.
mutation: $(VENV)/.installed-test
	$(PIP) install --quiet "$(MUTMUT)"
	HF_HUB_OFFLINE=1 nice -n 10 $(BIN)/python benchmarks/mutation.py $(MUTATION_ARGS)

setup: $(VENV)/.installed
setup-test: $(VENV)/.installed-test

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

$(VENV)/.installed: pyproject.toml | $(BIN)/python
	$(INSTALL_TORCH)
	$(PIP) install --quiet -e .
	touch $@

$(VENV)/.installed-test: pyproject.toml | $(BIN)/python
	$(INSTALL_TORCH)
	$(PIP) install --quiet -e ".[$(TEST_EXTRAS)]"
	touch $@ $(VENV)/.installed

clean-venv:
	rm -rf $(VENV)
