# A thin wrapper: each target is one or two cargo commands a person could type.
CARGO ?= cargo
SHELL := /bin/bash
.SHELLFLAGS := -eo pipefail -c

.PHONY: build demo test lint unit suites clean

build:
	$(CARGO) build --locked --workspace --bins --release

demo: build
	./target/release/broker demo $(DEMO_ARGS)

# Everything: lint, unit tests, and the suites that run the real binaries
# (which need the debug binaries built first).
test: lint
	$(CARGO) build --locked --workspace --bins
	$(CARGO) test --locked --workspace 2>&1 | tee target/test.log
	@awk '/^test result:/ {p += $$4; f += $$6} END {print "tests: " p " passed, " f " failed"}' target/test.log

lint:
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --locked --workspace --all-targets -- -D warnings

clean:
	$(CARGO) clean
