# A thin wrapper: each target is one or two cargo commands a person could type.
CARGO ?= cargo
SHELL := /bin/bash
.SHELLFLAGS := -eo pipefail -c
# Where cargo builds: ./target, or $CARGO_TARGET_DIR when that is set.
TARGET_DIR ?= $(or $(CARGO_TARGET_DIR),target)

.PHONY: build demo test lint policy-lint policy-review policy-verify seccomp-test residue-test fuzz soak bench clean install install-bins uninstall

# The two programs a user runs, and nothing else: target/release/broker and
# target/release/vault. The suites' helper programs are built elsewhere:
# `make test` in target/debug/, `make bench` and `make soak` in
# target/measure/ (the `measure` profile: release settings, its own place).
build:
	$(CARGO) build --locked -p broker -p vault --bins --release

demo: build
	$(TARGET_DIR)/release/broker demo $(DEMO_ARGS)

# Everything: lint, unit tests, and the suites that run the real binaries
# (which need the debug binaries and the examples built first). Every suite
# runs even when one fails; the last line counts them and names what failed
# (a test binary that ended without a result, killed by a signal say, counts
# as one failure, named: tests/summary.awk), and the exit status is non-zero
# if anything did.
# The dumps suite sets the kernel's core pattern for a few seconds (it must:
# that is what it tests) and restores it; the recipe restores it again on
# every exit path, even if a test process was killed.
test: lint policy-lint
	$(CARGO) build --locked --workspace --bins --examples
	set +e; pattern=$$(cat /proc/sys/kernel/core_pattern 2>/dev/null); \
	trap '[ -n "$$pattern" ] && [ -w /proc/sys/kernel/core_pattern ] && printf "%s\n" "$$pattern" > /proc/sys/kernel/core_pattern' EXIT; \
	$(CARGO) test --locked --workspace --no-fail-fast 2>&1 | tee $(TARGET_DIR)/test.log; \
	status=$${PIPESTATUS[0]}; \
	awk -v status=$$status -f tests/summary.awk $(TARGET_DIR)/test.log; \
	exit $$status

# Format, clippy with the workspace lints (missing docs of the broker
# library included), and the library's API documentation without warnings.
lint:
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --locked --workspace --all-targets -- -D warnings
	RUSTDOCFLAGS="-D warnings" $(CARGO) doc --locked -p broker --no-deps

# The review toolchain for sandbox-policies/: the lint (also run by every
# build that embeds a policy), and the rendering committed as REVIEW.md
# (a test fails when it is stale).
policy-lint:
	$(CARGO) run --locked -q -p sandbox-policies --bin policy -- lint

policy-review:
	$(CARGO) run --locked -q -p sandbox-policies --bin policy -- review > sandbox-policies/REVIEW.md

# The live filters are the reviewed ones: starts the debug demo broker and
# its vault, reads the filters the kernel holds for every thread of each
# (PTRACE_SECCOMP_GET_FILTER: run as root), compares them with the JSON byte
# for byte and by meaning, shows their SHA-256 next to REVIEW.md's, and
# stops both. For any running vault or broker: target/debug/policy verify PID.
policy-verify:
	$(CARGO) build --locked -p broker -p vault -p sandbox-policies --bins
	$(TARGET_DIR)/debug/policy verify --start $(TARGET_DIR)/debug/broker

# The seccomp regression suite alone (it is part of `make test`).
seccomp-test:
	$(CARGO) build --locked --workspace --bins
	$(CARGO) test --locked -p suites --test seccomp

# Memory residue, key locality, dumps and access by other processes (part
# of `make test`; run as root: the scanner reads /proc/PID/mem).
residue-test:
	$(CARGO) build --locked --workspace --bins
	$(CARGO) test --locked -p suites --test residue --test key_locality --test dumps

# Fuzz the frame decoder and the ring reader for FUZZ_SECONDS each (cargo
# fuzz on the stable toolchain: RUSTC_BOOTSTRAP lets it pass -Z flags).
FUZZ_SECONDS ?= 60
fuzz:
	command -v cargo-fuzz >/dev/null || $(CARGO) install cargo-fuzz --locked
	cd tests/fuzz && RUSTC_BOOTSTRAP=1 $(CARGO) fuzz run --fuzz-dir . frame_decoder -- -max_total_time=$(FUZZ_SECONDS)
	cd tests/fuzz && RUSTC_BOOTSTRAP=1 $(CARGO) fuzz run --fuzz-dir . ring_reader -- -max_total_time=$(FUZZ_SECONDS)

# A million reads (SOAK_READS); resident memory and secure-heap usage of
# both processes must come back to their baselines. Not part of `make test`.
SOAK_READS ?= 1000000
soak:
	$(CARGO) build --locked --workspace --bins --profile measure
	SOAK_READS=$(SOAK_READS) $(CARGO) test --locked --profile measure -p suites --test soak -- --ignored --nocapture

# The benchmark: prints a table, writes target/bench.json. Not a test. It
# measures the broker and vault built beside it, in target/measure/.
bench:
	$(CARGO) build --locked --workspace --bins --profile measure
	$(CARGO) run --locked --profile measure -q -p suites --bin bench

# Install both programs root-owned and execute-only (0711): a user then runs
# programs they cannot read, and the kernel makes each process non-dumpable
# from its first instruction (README, threat model). Needs root (sudo).
# The broker finds the vault in ../libexec/privsep-vault/ next to its bin/.
# `install-bins` installs what is built already (PROFILE=release or debug;
# BIN_DIR where cargo put it, when CARGO_TARGET_DIR moved it elsewhere).
PREFIX ?= /usr/local
PROFILE ?= release
BIN_DIR ?= $(TARGET_DIR)/$(PROFILE)
install: build
	$(MAKE) --no-print-directory install-bins

install-bins:
	install -d -m 0755 $(DESTDIR)$(PREFIX)/bin $(DESTDIR)$(PREFIX)/libexec/privsep-vault
	install -o root -g root -m 0711 $(BIN_DIR)/broker $(DESTDIR)$(PREFIX)/bin/broker
	install -o root -g root -m 0711 $(BIN_DIR)/vault $(DESTDIR)$(PREFIX)/libexec/privsep-vault/vault

uninstall:
	rm -f $(DESTDIR)$(PREFIX)/bin/broker $(DESTDIR)$(PREFIX)/libexec/privsep-vault/vault
	-rmdir $(DESTDIR)$(PREFIX)/libexec/privsep-vault

clean:
	$(CARGO) clean
