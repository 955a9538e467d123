# Quick start (fresh clone):  make run   |   make test
PYTHON ?= python3
VENV   ?= .venv
BIN     = $(VENV)/bin
STAMP   = $(VENV)/.installed

.PHONY: run run-outofprocess test bench setup clean

# hostkit and the third-party sample plugin (samples/hostkit_uvicorn) in one pip run, so the
# plugin's "hostkit" requirement is this checkout, not a package index.
$(STAMP): pyproject.toml samples/hostkit_uvicorn/pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test,samples,testing,bench]' -e samples/hostkit_uvicorn
	touch $(STAMP)

setup: $(STAMP)

## Run the hello sample InProcess on http://127.0.0.1:5000 (Ctrl+C stops it).
run: $(STAMP)
	cd samples/hello && ../../$(BIN)/python app.py

## The same program OutOfProcess: the module on http://127.0.0.1:5000, the app in a child.
run-outofprocess: $(STAMP)
	cd samples/hello && ../../$(BIN)/python app.py --hosting_model=OutOfProcess

## Run the whole test suite (unit and integration, asyncio and trio), with the server
## conformance kit against hypercorn (tests/) and the uvicorn sample plugin (its tests/).
test: $(STAMP)
	$(BIN)/python -m pytest

## Benchmarks (not part of CI): InProcess against bare hypercorn; OutOfProcess against nginx;
## the uvicorn plugin against bare uvicorn; 2 worker processes against the servers' own.
bench: $(STAMP)
	$(BIN)/python -m bench.inprocess
	$(BIN)/python -m bench.outofprocess
	$(BIN)/python -m bench.uvicorn
	$(BIN)/python -m bench.workers

clean:
	rm -rf $(VENV) *.egg-info
