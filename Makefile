# The two commands README.md gives a new user (run as root on Debian 12):
#   make demo   set up the host, build, run fwd on its embedded virtual-port default with
#               generated traffic, print what it did
#   make test   set up the host, then every check CI runs
# Everything else here is what those two are made of.

CARGO ?= cargo
FUZZ_SECONDS ?= 10

.PHONY: demo test setup build release release-v3 lint unit bench-smoke fuzz-smoke deploy-check tools api-fuzz deb deb-tools deb-check

# schemathesis, pinned, in a virtual environment of its own (Debian's pip refuses system
# installs); deploy/ci/api-fuzz.sh runs it against a real fwd + fwmgmt.
SCHEMATHESIS_VERSION ?= 4.32.5
API_FUZZ_VENV ?= target/api-fuzz-venv

setup:
	bash deploy/dev/setup-host.sh

tools:
	@command -v cargo-nextest >/dev/null || $(CARGO) install cargo-nextest --locked
	@command -v cargo-fuzz >/dev/null || $(CARGO) install cargo-fuzz --locked

build:
	$(CARGO) build --workspace --all-targets

release:
	$(CARGO) build --release -p dataplane -p mgmt

# Opt-in: the same release build for x86-64-v3 CPUs (AVX2, BMI2, FMA, MOVBE: Haswell,
# Zen and later) in its own target directory, target/x86-64-v3/release/. The default
# build stays portable to any x86-64; fwd built this way refuses to start on a CPU
# without AVX2. See docs/fwd.md ("CPU level").
release-v3:
	RUSTFLAGS="-C target-cpu=x86-64-v3" $(CARGO) build --release -p dataplane -p mgmt \
		--target-dir target/x86-64-v3

lint:
	$(CARGO) fmt --all --check
	$(CARGO) clippy --workspace --all-targets -- -D warnings
	$(CARGO) clippy -p dataplane --no-default-features --all-targets -- -D warnings
	@! grep -rn --include='*.rs' 'unsafe' proto/src dataplane/src mgmt/src \
		| grep -v 'forbid(unsafe_code)' | grep -v '^.*//' \
		|| (echo "unsafe code outside dpdk-bindings" >&2; exit 1)

unit:
	$(CARGO) nextest run --workspace --no-fail-fast
	$(CARGO) test --workspace --doc

# Every criterion bench once (`--test`: one iteration per bench, each set-up's assertions
# checked), so a bench that no longer runs shows here and not in the next perf session.
# Only the bench targets: the unit tests ran in `unit`. Built with the dev profile: this
# checks that each bench runs and its set-up holds, not its speed, and the dev profile
# reuses `unit`'s build instead of a fat-LTO one (minutes on 2 cores). About 3 min.
bench-smoke:
	$(CARGO) bench --profile dev --workspace --bench '*' -- --test

# Each fuzz target runs FUZZ_SECONDS on the committed corpus plus fresh inputs.
fuzz-smoke:
	bash dataplane/fuzz/smoke.sh $(FUZZ_SECONDS)

# Every example config and ruleset through `fwd check`, units through systemd-analyze,
# alert rules through promtool, the dashboard through jq (deploy/ci/check.sh).
deploy-check:
	$(CARGO) build --workspace --bins
	FWD_CHECK_STRICT=1 FWD=target/debug/fwd deploy/ci/check.sh

# Property-based API fuzzing from the OpenAPI document (bounded: examples and ~2.5 min).
api-fuzz:
	$(CARGO) build -p dataplane --bin fwd -p mgmt --bin fwmgmt
	@test -x $(API_FUZZ_VENV)/bin/st && $(API_FUZZ_VENV)/bin/st --version | grep -q $(SCHEMATHESIS_VERSION) \
		|| (python3 -m venv $(API_FUZZ_VENV) && $(API_FUZZ_VENV)/bin/pip install -q schemathesis==$(SCHEMATHESIS_VERSION))
	ST=$(API_FUZZ_VENV)/bin/st FWD=target/debug/fwd FWMGMT=target/debug/fwmgmt bash deploy/ci/api-fuzz.sh

# The Debian package (deploy/debian, docs/deploy.md). `make deb`: release build, then
# target/deb/fwd_VERSION_ARCH.deb. deb-check packages the debug binaries deploy-check
# built and tests install, upgrade, remove and purge in a Debian 12 chroot, with lintian.
deb-tools:
	bash deploy/dev/setup-host.sh --only debhelper dpkg-dev lintian debootstrap

deb: setup deb-tools
	bash deploy/build-deb.sh

deb-check: deb-tools
	$(CARGO) build --workspace --bins
	bash deploy/ci/deb-check.sh

test: setup tools lint unit bench-smoke fuzz-smoke deploy-check api-fuzz deb-check

demo: setup release
	$(CARGO) build --release -p perfgen
	bash deploy/dev/demo.sh
