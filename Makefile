# Two commands a user needs (see README): `make book` and `make test`.
# Each creates .venv and installs the project into it when needed, so each works
# alone on a fresh clone. Every install honours constraints.txt (CPU torch pin).
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
PROFILE ?= default
PYTEST_ARGS ?=

.PHONY: book test venv clean

venv: $(STAMP)

$(STAMP): pyproject.toml constraints.txt
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip setuptools wheel
	$(BIN)/python -m pip install --quiet -c constraints.txt -e '.[test,ray]'
	@touch $(STAMP)

book: $(STAMP)
	$(BIN)/cervix book --profile $(PROFILE)

test: $(STAMP)
	$(BIN)/python -m pytest $(PYTEST_ARGS)

clean:
	rm -rf book/_build _build book/*.ipynb
