# rustbp: `make demo` sets everything up and runs the article's demo; `make test` runs every test.
.DEFAULT_GOAL := help
SHELL := /bin/bash
VENV ?= .venv
PY := $(VENV)/bin/python
export VIRTUAL_ENV := $(abspath $(VENV))
export PATH := $(VIRTUAL_ENV)/bin:$(PATH)

$(VENV)/.ready: requirements-dev.txt
	python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -r requirements-dev.txt
	touch $@

.PHONY: venv
venv: $(VENV)/.ready ## create the virtualenv with the build and test tools

.PHONY: build
build: venv ## build the extension (release) into the virtualenv
	maturin develop --release --quiet

.PHONY: demo
demo: build ## set up and walk through the article's worked example
	$(PY) -m rustbp demo

.PHONY: test
test: build ## set up and run every test: cargo test (with the GPU path), then pytest
	cargo test --quiet --features gpu
	$(PY) -m pytest

.PHONY: fuzz
fuzz: build ## throw 10,000 random cases at the public API (CASES=n for more); prints any finding
	$(PY) tests/fuzz.py --cases $(or $(CASES),10000)

# The core's math; network.rs is left out while it is being restructured. Each mutant is a rebuild and a
# `cargo test`, about a minute on 2 cores: SHARD=k/n runs a part (e.g. SHARD=0/4 .. 3/4 on four machines).
MUTATED := src/activation.rs src/loss.rs src/optim.rs src/linalg.rs src/exp.rs

.PHONY: mutants
mutants: ## mutation testing of the core's math with cargo-mutants (SHARD=k/n for a part); lists survivors
	command -v cargo-mutants >/dev/null || cargo install cargo-mutants --locked
	cargo mutants --no-shuffle $(addprefix -f ,$(MUTATED)) $(if $(SHARD),--shard $(SHARD)) --timeout 300 -- --lib

.PHONY: lint
lint: venv ## rustfmt, clippy (warnings denied), ruff, mypy --strict, stubtest
	cargo fmt --check
	cargo clippy --all-targets --features python,gpu -- -D warnings
	cargo clippy --all-targets -- -D warnings
	$(VENV)/bin/ruff check python tests
	$(VENV)/bin/ruff format --check python tests
	$(VENV)/bin/mypy
	$(PY) -m mypy.stubtest rustbp._rustbp

.PHONY: wheel
wheel: venv ## build the abi3 wheel into dist/
	maturin build --release --out dist

.PHONY: help
help: ## list the targets
	@grep -E '^[a-z]+:.*## ' $(MAKEFILE_LIST) | awk -F ':.*## ' '{printf "  make %-8s %s\n", $$1, $$2}'
