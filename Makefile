# quorumlock: the two commands a new user needs are `make demo` and `make test`.
# Both install what is missing (redis-server, toolchain targets) before they run.

CARGO ?= cargo

.PHONY: bench bench-quick bench-deps wasm wasm-test demo demo-contention serve leader test deps check lint unit

## Run the demo: starts three local redis-server nodes (unless QUORUMLOCK_NODES is set) and two
## instances of the example HTTP service, fires concurrent requests at both and prints who got
## each lock. Leaves no process behind.
demo: deps
	$(CARGO) build --quiet --release -p quorumlock-examples --bins
	$(CARGO) run --quiet --release -p quorumlock-examples --bin demo

## The earlier demo: tasks of one process contend for a lock through the client API.
demo-contention: deps
	$(CARGO) run --quiet --release -p quorumlock-examples --bin contention

## Serve the example HTTP service on 127.0.0.1:3001 and 127.0.0.1:3002 until Ctrl-C.
serve: deps
	$(CARGO) run --quiet --release -p quorumlock-examples --bin lock-server

## Leader election: workers take turns running a once-per-tick job under `with_lock`.
leader: deps
	$(CARGO) run --quiet --release -p quorumlock-examples --bin leader-election

## Run every check and test.
test: deps lint check unit wasm-test

deps:
	@scripts/install-deps.sh

lint:
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --workspace --all-targets -- -D warnings
	$(CARGO) clippy -p quorumlock --no-default-features --lib -- -D warnings
	$(CARGO) clippy -p quorumlock --features tls --all-targets -- -D warnings
	RUSTDOCFLAGS="-D warnings" $(CARGO) doc --no-deps -p quorumlock --features test-util -p quorumlock-tower

check:
	$(CARGO) check -p quorumlock --no-default-features
	$(CARGO) check -p quorumlock --no-default-features --target wasm32-unknown-unknown
	@if $(CARGO) tree -p quorumlock --no-default-features -e normal | grep -E '^.*(tokio|redis) v'; then \
		echo "the sans-IO core must not depend on tokio or redis"; exit 1; fi

unit:
	$(CARGO) test --workspace
	$(CARGO) test -p quorumlock --features tls --test client_tls

## Build the npm package into wasm/pkg: the core for wasm32, the wasm-bindgen glue, wasm-opt,
## the JavaScript API; prints the raw and gzipped sizes.
wasm: deps
	wasm/build.sh

## Test the built npm package with node --test against real redis-server nodes: locking,
## faults, using, abort, bad input, Upstash REST, workerd, Deno, Bun, the packed tarball,
## contention with the Rust client, and the TypeScript declarations.
wasm-test: wasm
	$(CARGO) build --quiet -p quorumlock-examples --bin cross_client
	cd wasm && timeout 900 node --test --test-timeout=60000 --test-concurrency=2 test/*.test.mjs

## Benchmarks: quorumlock against rslock, redlock-rs, npm redlock and a raw-Redis floor, on
## redis-server nodes it starts and stops itself (3, then 5). Prints a Markdown report and
## writes it with the raw results to target/bench-results/. About 6 minutes on 2 cores, plus
## the build; bench-quick runs every scenario briefly, in under 2. Measure on a quiet machine.
bench: bench-deps
	$(CARGO) run --quiet --release -p quorumlock-bench --bin bench

bench-quick: bench-deps
	$(CARGO) run --quiet --release -p quorumlock-bench --bin bench -- --quick

# The bench's rows for the npm package use the package as built by wasm/build.sh; without it
# they are skipped, with a note in the report.
bench-deps:
	@scripts/install-deps.sh --bench
	@wasm/build.sh || echo "bench: the quorumlock npm package did not build; its rows will be skipped"
	$(CARGO) build --quiet --release -p quorumlock-bench
