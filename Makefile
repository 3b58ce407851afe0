# A thin wrapper: each target is one or two cargo commands a person could type.
CARGO ?= cargo

.PHONY: build demo test lint unit suites clean

build:
	$(CARGO) build --locked --workspace --bins --release

demo: build
	./target/release/broker demo $(DEMO_ARGS)

# Everything: lint, unit tests, and the suites that run the real binaries
# (which need the debug binaries built first).
test: lint
	$(CARGO) build --locked --workspace --bins
	$(CARGO) test --locked --workspace

lint:
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --locked --workspace --all-targets -- -D warnings

clean:
	$(CARGO) clean
