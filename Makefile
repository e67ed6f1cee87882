# The README's two commands, on a fresh machine: `make run` and `make test`.
# Each creates .venv on first use and installs into it (the CPU build of torch first, so pip
# never reaches for a multi-GB CUDA build), then does its job. A stamp file per extra makes the
# second call skip the installation; editing pyproject.toml or constraints.txt makes the next
# call reinstall. Every install takes the versions of constraints.txt: the ones last tested.
#
#   make run                      set up, then `tlm-bot run` (needs DISCORD_TOKEN, see README)
#   make setup                    only set up (.venv with the bot), e.g. for the systemd unit
#   make test                     set up with the test extras, then the offline test suite
#   make test PYTEST_ARGS=-x      arguments for pytest
#   make test PYTEST_JOBS=0       the suite in one process (default: one worker per core)
#   make run TORCH_INDEX=         take torch from your usual index (e.g. a machine with a GPU)
#   make mutation                 mutation testing of the protection modules (slow; not in CI):
#                                 kill ratio per module, see docs/MUTATION.md
#   make mutation MUTATION_ARGS="policy gate"   some modules (`--list` names them)
#   make lock                     write constraints.txt from this venv, after `make test` passed
#   make messages                 extract every user-facing string into core/locales/messages.pot
#                                 and merge it into each core/locales/<language>.po (README)

PYTHON ?= python3
VENV ?= .venv
# The tested versions of every package (`make lock` writes it).
CONSTRAINTS ?= constraints.txt
TORCH ?= $(shell grep -m1 '^torch==' $(CONSTRAINTS))
# The PyTorch CPU wheels. Plain PyPI serves Linux a CUDA build of several GB.
TORCH_INDEX ?= https://download.pytorch.org/whl/cpu
PYTEST_ARGS ?=
# Mutation testing: the tool, pinned, and arguments for benchmarks/mutation.py (module names,
# --limit-min, --children). The module list lives in that script.
MUTMUT ?= mutmut==3.8.1
MUTATION_ARGS ?=
# pytest-xdist workers; 0 runs the suite in this process.
PYTEST_JOBS ?= auto
# The extras `make test` installs (CI adds ray: `make test TEST_EXTRAS=test,ray`).
TEST_EXTRAS ?= test

BIN := $(VENV)/bin
PIP := $(BIN)/python -m pip
TORCH_FROM := $(if $(TORCH_INDEX),--index-url $(TORCH_INDEX),)
# The CPU index when it answers; else the usual index (a mirror or proxy may serve CPU torch).
INSTALL_TORCH := $(PIP) install --quiet --retries 0 --timeout 15 "$(TORCH)" $(TORCH_FROM) \
	|| $(PIP) install --quiet "$(TORCH)"

.PHONY: run test mutation setup setup-test lock clean-venv messages messages-pot

run: $(VENV)/.installed
	$(BIN)/tlm-bot run

test: $(VENV)/.installed-test
	HF_HUB_OFFLINE=1 $(BIN)/python -m pytest -q -n $(PYTEST_JOBS) $(PYTEST_ARGS)

# nice: it runs for a long time on every core it is given.
mutation: $(VENV)/.installed-test
	$(PIP) install --quiet "$(MUTMUT)"
	HF_HUB_OFFLINE=1 nice -n 10 $(BIN)/python benchmarks/mutation.py $(MUTATION_ARGS)

# The message catalog (core/i18n.py): new strings land in each .po with an empty translation
# (tests/test_catalog.py fails until someone writes it); a changed string becomes fuzzy.
LOCALES := core/locales
POT ?= $(LOCALES)/messages.pot
messages: messages-pot
	for po in $(LOCALES)/*.po; do \
		$(BIN)/pybabel update -i $(POT) -o $$po -l $$(basename $$po .po) \
			--no-wrap --ignore-obsolete --init-missing || exit 1; \
	done

# Only the extraction (tests/test_catalog.py runs it into a temporary file).
messages-pot: $(VENV)/.installed
	$(BIN)/pybabel -q extract -F babel.cfg -k tr -k lazy -k lazy_ngettext:1,2 -k plural_noun:1,2 -k locale_str \
		--add-comments=Translators: --sort-by-file --add-location=file --no-wrap \
		--project=tlm-bot -o $(POT) .

setup: $(VENV)/.installed
setup-test: $(VENV)/.installed-test

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

$(VENV)/.installed: pyproject.toml $(CONSTRAINTS) | $(BIN)/python
	$(INSTALL_TORCH)
	$(PIP) install --quiet -c $(CONSTRAINTS) -e .
	touch $@

$(VENV)/.installed-test: pyproject.toml $(CONSTRAINTS) | $(BIN)/python
	$(INSTALL_TORCH)
	$(PIP) install --quiet -c $(CONSTRAINTS) -e ".[$(TEST_EXTRAS)]"
	touch $@ $(VENV)/.installed

# Every installed package but the project itself, at its version (a local label such as
# torch's `+cpu` dropped, so the same line also matches the build another index serves).
lock:
	{ sed -n '/^#/p' $(CONSTRAINTS); \
	  $(PIP) freeze --exclude-editable | sed 's/+[A-Za-z0-9.]*$$//'; } > $(CONSTRAINTS).new
	mv $(CONSTRAINTS).new $(CONSTRAINTS)

clean-venv:
	rm -rf $(VENV)
