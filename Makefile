# Quick start (fresh clone):  make run   |   make test
PYTHON ?= python3
VENV   ?= .venv
BIN     = $(VENV)/bin
STAMP   = $(VENV)/.installed

.PHONY: run run-outofprocess test tools bench setup clean

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
test: $(STAMP) tools
	$(BIN)/python -m pytest

## The external tools the hardening suites run (tests/hardening/external_tools.py): installed
## with apt-get (bounded, quiet) when one is missing and this runs as root; otherwise it says
## what to install, and the tests that need a missing tool fail saying the same.
TOOLS         = slowhttptest sslscan h2load
TOOL_PACKAGES = slowhttptest sslscan nghttp2-client
tools:
	@missing=""; for tool in $(TOOLS); do command -v $$tool >/dev/null || missing="$$missing $$tool"; done; \
	if [ -z "$$missing" ]; then exit 0; fi; \
	if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	  echo "make tools: installing $(TOOL_PACKAGES) (missing:$$missing)"; \
	  DEBIAN_FRONTEND=noninteractive timeout 600 sh -c 'apt-get update -qq && apt-get install \
	    -y -qq --no-install-recommends $(TOOL_PACKAGES)' >/dev/null \
	    || echo "make tools: apt-get could not install $(TOOL_PACKAGES)" >&2; \
	else \
	  echo "make tools: missing$$missing; install them with 'sudo make tools' (or apt-get" \
	    "install $(TOOL_PACKAGES)): the tests that run them fail until then" >&2; \
	fi

## Benchmarks (not part of CI): InProcess against bare hypercorn; OutOfProcess against nginx;
## the uvicorn plugin against bare uvicorn; 2 worker processes against the servers' own; a WSGI
## app against gunicorn's threads; HTTP/2 (h2load) InProcess against hypercorn and OutOfProcess
## against nginx.
bench: $(STAMP)
	$(BIN)/python -m bench.inprocess
	$(BIN)/python -m bench.outofprocess
	$(BIN)/python -m bench.uvicorn
	$(BIN)/python -m bench.workers
	$(BIN)/python -m bench.wsgi
	$(BIN)/python -m bench.http2

clean:
	rm -rf $(VENV) *.egg-info
