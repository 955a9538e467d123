# Quick start (fresh clone):  make run   |   make test
PYTHON ?= python3
VENV   ?= .venv
BIN     = $(VENV)/bin
STAMP   = $(VENV)/.installed

.PHONY: run test bench setup clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test,samples]'
	touch $(STAMP)

setup: $(STAMP)

## Run the hello sample InProcess on http://127.0.0.1:5000 (Ctrl+C stops it).
run: $(STAMP)
	cd samples/hello && ../../$(BIN)/python app.py

## Run the whole test suite (unit and integration, asyncio and trio).
test: $(STAMP)
	$(BIN)/python -m pytest

## Benchmarks (not part of CI): InProcess against bare hypercorn; OutOfProcess against nginx.
bench: $(STAMP)
	$(BIN)/python -m bench.inprocess
	$(BIN)/python -m bench.outofprocess

clean:
	rm -rf $(VENV) *.egg-info
