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

# Linux: link with zig against glibc 2.17's symbols, so that the wheel is manylinux2014 (pip takes it on
# any glibc distribution since 2014) without a build container. `make build` uses the same flags, so the
# wheel reuses its compiled artifacts instead of compiling the release build a second time.
ifeq ($(shell uname -s),Linux)
WHEEL_FLAGS := --zig --compatibility manylinux2014
endif

.PHONY: build
build: venv ## build the extension (release) into the virtualenv, editable: Python edits need no rebuild
	MATURIN_PEP517_ARGS="$(WHEEL_FLAGS)" $(PY) -m pip install -q --no-build-isolation --no-deps --editable .

.PHONY: demo
demo: build ## set up and walk through the article's worked example
	$(PY) -m rustbp demo

.PHONY: test
test: build ## set up and run every test: cargo test (with the GPU path), then pytest (but check-wheel's)
	cargo test --quiet --features gpu
	$(PY) -m pytest --ignore=tests/test_wheel.py

.PHONY: fuzz
fuzz: build ## throw 10,000 random cases at the public API (CASES=n for more); prints any finding
	$(PY) tests/fuzz.py --cases $(or $(CASES),10000)

# The core's math and the CPU network. Each mutant is a rebuild and a `cargo test`, 10-25 s on 2 cores
# after a first build of about 5 min: SHARD=k/n runs a part (e.g. SHARD=0/4 .. 3/4 on four machines).
# Expected survivors, all equivalent (the threaded and one-pass results are tested to be the same bits,
# and both product routines are checked against a plain product on each side of the threshold):
# - whether or how work is split over threads: PARALLEL's `<<` in optim.rs and linalg.rs; optim.rs
#   `p.len() < PARALLEL`; activation.rs apply's `&&`/`>=`/`!=` and chunk size's `/`, backprop's `>=`;
#   linalg.rs `large` (threads, parts), `threaded`'s thresholds, and `blocks` (by rows or by columns, at
#   most len / 32 parts);
# - which of two product routines runs: linalg.rs `matmul`'s `m * n * k < SMALL || k == 0`.
# - exp.rs's clamp `x < -746.0` (and -105.0) as `<=`: the bound is clamped to itself.
# - network/backend.rs `in_pool` and `whole_call`: whether a run of steps, or a whole call, is handed to
#   the pool once; each parallel region goes through the pool anyway.
# - optim.rs `Rule::kernel`'s guard `wd == T::zero()` as `false`: the general arm computes the same
#   values, only slower.
# - network.rs `bias_grad`: deleting the arm `0` (the general arm does nothing on an empty gradient), and
#   the guard `width != 1` as `true` (one neuron's column sum is the total, the same additions in order).
# - network/lanes.rs: `side_by_side`'s `momentum != 0.0` as `==` (it splits the members the same way);
#   the poll interval's `/ LANES`; guards `Population::fit` checks first (a zero batch size, one seed per
#   member).
# - simd.rs: which build `widest` picks, and `whole_rows` (every build gives the same bits, tested in
#   network/tiny.rs and network/lanes.rs; the fence changes only speed).
# - network/tiny.rs: `pad_is_fresh` (a debug check); the test of `fresh` before copying the network in
#   (copying it again gives the same values; a missed `changed` is tested); deleting an arm of
#   `train_tiny`'s match on the padded size (a larger padding gives the same bits, only slower);
#   `Layout::of`'s `P <= 8` (whether padded rows are kept: the same bits); `step`'s `wd == T::zero()`
#   (as in `Rule::kernel`); `max_abs`'s `a > m` as `>=`; whether an SGD step is written in place or
#   checked in a second buffer when its values are finite either way (both give the same bits, tested),
#   such as `bounds_after`'s `<` against the limit as `<=`.
# - activation.rs `row_max`'s `v > m` as `>=`: of two equal values it keeps the later (0 and -0 give the
#   same exponentials and log-sum-exp); `apply_keeping_sums`'s `z.len() < PARALLEL` as `<=` (a softmax of
#   exactly PARALLEL values run on this thread, keeping its sums: the same bits, tested).
# - network/tiny.rs `step`'s `P != 8` (which update runs at width 8: the same bits).
MUTATED := src/activation.rs src/loss.rs src/optim.rs src/linalg.rs src/exp.rs src/network.rs \
	src/network/tiny.rs src/network/backend.rs src/network/lanes.rs src/simd.rs

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
wheel: venv ## build the abi3 wheel into dist/ (manylinux2014 on Linux)
	rm -f dist/rustbp-*.whl
	maturin build --release $(WHEEL_FLAGS) --out dist

.PHONY: check-wheel
check-wheel: wheel ## check the wheel: auditwheel's tag, the article from a fresh virtualenv, a CPU without AVX
	RUSTBP_REQUIRE_WHEEL=1 $(PY) -m pytest tests/test_wheel.py -k 'not sdist'

.PHONY: sdist
sdist: venv ## build the source distribution into dist/
	rm -f dist/rustbp-*.tar.gz
	maturin sdist --out dist

.PHONY: check-sdist
check-sdist: sdist ## pip builds the sdist in a fresh virtualenv (a full compile); the article from it
	RUSTBP_REQUIRE_SDIST=1 $(PY) -m pytest tests/test_wheel.py -k sdist

.PHONY: help
help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F ':.*## ' '{printf "  make %-11s %s\n", $$1, $$2}'
