# quorumlock: the two commands a new user needs are `make demo` and `make test`.
# Both install what is missing (redis-server, toolchain targets) before they run.

CARGO ?= cargo

.PHONY: demo test deps check lint unit

## Run the demo: starts three local redis-server nodes (unless QUORUMLOCK_NODES is set) and
## lets several tasks contend for one lock.
demo: deps
	$(CARGO) run --quiet --release -p quorumlock-examples --bin contention

## Run every check and test.
test: deps lint check unit

deps:
	@scripts/install-deps.sh

lint:
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --workspace --all-targets -- -D warnings
	$(CARGO) clippy -p quorumlock --no-default-features --lib -- -D warnings
	$(CARGO) clippy -p quorumlock --features tls --lib -- -D warnings

check:
	$(CARGO) check -p quorumlock --no-default-features
	$(CARGO) check -p quorumlock --no-default-features --target wasm32-unknown-unknown
	@if $(CARGO) tree -p quorumlock --no-default-features -e normal | grep -E '^.*(tokio|redis) v'; then \
		echo "the sans-IO core must not depend on tokio or redis"; exit 1; fi

unit:
	$(CARGO) test --workspace
