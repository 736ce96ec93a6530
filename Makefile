# The two commands: `make run` (the whole system on this machine) and `make test` (every test).
SHELL := /bin/bash
export CARGO_TARGET_DIR ?= $(HOME)/.cache/drishtiksha/target
# Builds never need a database: query metadata lives in .sqlx/ (refresh with `make sqlx-prepare`).
export SQLX_OFFLINE ?= true

.PHONY: run test bench setup lint fmt sqlx-prepare install-cli

run:
	@scripts/setup.sh --run
	@scripts/run.sh

test:
	@scripts/setup.sh
	@scripts/test.sh

bench:
	@scripts/setup.sh --bench
	@scripts/bench.sh

setup:
	@scripts/setup.sh

fmt:
	cargo fmt --all

lint:
	cargo fmt --all --check
	cargo clippy --workspace --all-targets -- -D warnings

# Regenerates .sqlx/ against a scratch database migrated from migrations/.
sqlx-prepare:
	@scripts/sqlx-prepare.sh

# The `drishtiksha` command line, optimised, into ~/.cargo/bin (make run already builds a debug one).
install-cli:
	cargo install --locked --path cli
