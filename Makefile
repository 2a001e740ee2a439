# Quick start: `make demo` and `make test` create .venv if needed, install, and run.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp

.PHONY: install demo test clean

install: $(STAMP)

# Reinstalls only when pyproject.toml changes; the package itself is editable.
$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[train,test,teachers,plots,grounded-sam]'
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/gkd demo --out demo-out

test: $(STAMP)
	$(BIN)/python -m pytest -q

clean:
	rm -rf $(VENV) demo-out build dist *.egg-info .pytest_cache
