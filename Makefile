# Development entry points. `make test` sets everything up and runs the tests;
# `make demo` sets up and runs banger end to end on the simulated host
# (`BANGER_VMM=qemu make demo`: the same on the image's real kernel, banger-fcqemu).
PY ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
PLUGINS := $(wildcard plugins/*)
# Debian 12's own interpreter (3.11.2: no tarfile extraction filters): vm cp must be safe there too.
DEBIAN_PY ?= /usr/bin/python3
DEBIAN_VENV ?= .venv-debian-python
# setuptools warns once per editable install that a folder named like the package may
# shadow it (our flat layouts are deliberate): keep `make dev`/`make demo` quiet.
PIP_QUIET := PYTHONWARNINGS="ignore:Editable installation"
DEBIAN_TESTS := tests/core/test_safeextract.py plugins/vsock/tests/test_e2e_hostile_guest.py \
	plugins/vsock/tests/test_e2e_cp.py

.PHONY: deps dev test test-fast test-debian-python conformance lint docs demo bench clean

deps:  ## Debian packages (root; installs only what is missing)
	scripts/install-host-deps

$(BIN)/banger: pyproject.toml $(wildcard plugins/*/pyproject.toml) vmmkit/pyproject.toml testing/pyproject.toml
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(PIP_QUIET) $(BIN)/pip install -q -e '.[test]' -e vmmkit $(foreach p,$(PLUGINS),-e $(p)) -e testing
	touch $@

dev: $(BIN)/banger  ## create .venv with the core, every plugin, vmmkit and pytest-banger installed editable

test: deps dev lint  ## lint, the whole test suite (root: namespaces, TAPs, loop devices), scaffold check, Debian's python
	$(BIN)/python -m pytest -q
	$(BIN)/python scripts/check_scaffold.py
	$(MAKE) test-debian-python

$(DEBIAN_VENV)/bin/banger: pyproject.toml $(wildcard plugins/*/pyproject.toml) vmmkit/pyproject.toml testing/pyproject.toml
	$(DEBIAN_PY) -m venv $(DEBIAN_VENV)
	$(PIP_QUIET) $(DEBIAN_VENV)/bin/pip install -q pytest pytest-timeout -e . -e vmmkit $(foreach p,$(PLUGINS),-e $(p)) -e testing
	touch $@

test-debian-python: $(DEBIAN_VENV)/bin/banger  ## the vm cp and hostile-guest tests, everything (CLI, daemon) on $(DEBIAN_PY)
	@$(DEBIAN_VENV)/bin/python -c 'import sys, tarfile; print("test-debian-python: Python", sys.version.split()[0], "tarfile.data_filter:", hasattr(tarfile, "data_filter"))'
	$(DEBIAN_VENV)/bin/python -m pytest -q -p no:cacheprovider $(DEBIAN_TESTS)

test-fast: dev  ## tests that build no image
	$(BIN)/python -m pytest -q -m "not slow"

conformance: dev  ## the conformance suite on banger-fcsim and banger-fcqemu; FIRECRACKER=/path/to/firecracker adds a real one (KVM host)
	BANGER_CONFORMANCE_FIRECRACKER="$(FIRECRACKER)" $(BIN)/python -m pytest -q tests/conformance

lint: dev  ## ruff (lint + format check), mypy over banger_core, plugins/, vmmkit/ and testing/ (--strict over plugins/, vmmkit/ and the public API), and the generated hook docs check
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy
	$(BIN)/mypy --strict plugins vmmkit $$($(BIN)/python scripts/public_api_files.py)
	$(BIN)/python scripts/hookdocs.py --check

docs: dev  ## regenerate the hook reference in docs/plugins.md from the hookspecs
	$(BIN)/python scripts/hookdocs.py

demo: deps dev  ## build the Debian image and boot a VM on the simulated host (BANGER_VMM=qemu: on its real kernel under QEMU)
	$(BIN)/python -m banger_core.demo

bench: dev
	$(BIN)/python bench/cli_startup.py
	$(BIN)/python bench/create.py
	$(BIN)/python bench/exec.py
	$(BIN)/python bench/dns.py
	$(BIN)/python bench/extract.py

clean:
	rm -rf $(VENV) $(DEBIAN_VENV)
