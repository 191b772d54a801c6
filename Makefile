# Slipway: `make run` serves the dashboard, `make test` runs every test.
# Both install whatever is missing first (scripts/setup.sh).

SHELL := /bin/bash
export SLIPWAY_ADDR ?= 127.0.0.1:3000
export SLIPWAY_DATA_DIR ?= ./data
# A build from nothing gains nothing from incremental state, which doubles target/'s size.
export CARGO_INCREMENTAL ?= 0

.PHONY: run test setup site server unit integration e2e wasm-check bench clean

run: setup site server
	SLIPWAY_ALLOW_LOCAL_REPOS=$${SLIPWAY_ALLOW_LOCAL_REPOS:-1} target/release/slipway

test: setup site unit wasm-check integration e2e

setup:
	@scripts/setup.sh

site:
	@scripts/build-site.sh

server:
	cargo build --release -p server --bin slipway

# Unit tests of every crate, and the engine against a fake runtime; clippy on every target.
unit:
	cargo test -p protocol -p engine -p app -p bench
	cargo clippy --all-targets -- -D warnings

# The browser build must not pull in the server's runtime (leptos issue 3625).
wasm-check:
	scripts/check-wasm-deps.sh

# The HTTP API and the monitor WebSocket against a real server and the real Docker engine.
integration:
	scripts/docker.sh
	cargo test -p server --tests -- --test-threads=2

# Playwright in Debian's Chromium against the debug build of the server, which shares its
# dependencies with `cargo test` (a release build would compile everything a second time).
e2e:
	scripts/docker.sh
	cargo build -p server --bin slipway
	cd end2end && SLIPWAY_BIN=target/debug/slipway npx playwright test

clean:
	cargo clean
	rm -rf data target/site

# The monitor benchmark (not part of `make test`): a real server on loopback with a
# synthetic publisher, then one real Docker build. Prints a table of figures. The
# 50,000 viewers need ~100,000 open files between the benchmark and its server: as root
# the hard limit is raised first. `make bench BENCH_ARGS="--quick idle"` runs a tenth of
# one section.
bench: setup
	scripts/docker.sh
	cargo build --release -p bench
	ulimit -Hn 1048576 2>/dev/null; ulimit -n "$$(ulimit -Hn)" && target/release/slipway-bench $(BENCH_ARGS)
