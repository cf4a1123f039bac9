# leadkit: `make demo` sets everything up and runs the main job; `make test` sets up and passes the tests.
SHELL := /bin/bash
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-stamp

.PHONY: setup demo test wheel-test lint typecheck pytest chromium bench chaos pyairtable-suite dashboard lab clean

setup: $(STAMP)

$(STAMP): pyproject.toml
	@test -x $(PY) || python3 -m venv $(VENV)
	@$(PY) -m pip install -q -U pip > $(VENV)/setup.log 2>&1 || { cat $(VENV)/setup.log >&2; exit 1; }
	@$(PY) -m pip install -q -e '.[dev,dask]' >> $(VENV)/setup.log 2>&1 || { cat $(VENV)/setup.log >&2; echo "setup failed: pip's output is above (and in $(VENV)/setup.log)" >&2; exit 1; }
	@$(PY) -c "import leadkit, papermill, panel, pyairtable, playwright" || { echo "setup failed: a package does not import; pip's output is in $(VENV)/setup.log" >&2; exit 1; }
	@touch $(STAMP)

demo: setup
	$(VENV)/bin/leadkit demo

chromium:
	@command -v chromium >/dev/null 2>&1 || { \
	  echo "installing Debian's chromium for the browser tests"; \
	  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null) ; }
	@command -v chromium >/dev/null 2>&1 || { echo "chromium is missing and could not be installed" >&2; exit 1; }

lint: setup
	$(VENV)/bin/ruff check leadkit leadkit_sandbox tests bench dashboards
	$(VENV)/bin/ruff format --check leadkit leadkit_sandbox tests bench dashboards
	$(VENV)/bin/lint-imports --no-cache

typecheck: setup
	$(VENV)/bin/mypy leadkit leadkit_sandbox

pytest: setup chromium
	$(VENV)/bin/pytest -q -p no:randomly -m "not wheel and not chaos" tests --nbval-lax notebooks

# the wheel round trip: build, install into a fresh virtualenv, run the demo outside the source tree (minutes)
wheel-test: setup
	$(VENV)/bin/pytest -q -p no:randomly -m wheel tests/wheel_install

test: setup chromium lint typecheck pytest

chaos: setup
	$(VENV)/bin/pytest -q -p no:randomly -m chaos tests/chaos
	$(PY) bench/chaos.py --schedules 200

bench: setup chromium
	$(PY) bench/batch.py
	$(PY) bench/harvest_scale.py
	$(PY) bench/airtable_requests.py
	$(PY) bench/airtable_scale.py
	$(PY) bench/dashboard.py

# pyairtable's own integration suite against the Airtable sandbox; not in `make test`: the suite is not on any
# package registry (pass SOURCE=<a clone of pyairtable> where its archive cannot be downloaded)
pyairtable-suite: setup
	$(PY) bench/pyairtable_suite.py $(if $(SOURCE),--source $(SOURCE))

dashboard: setup
	$(VENV)/bin/leadkit dashboard

lab: setup
	$(VENV)/bin/leadkit lab

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache
