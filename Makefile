# Vouch: two commands on a fresh Debian 12 machine with Swift 6.
#   make demo   install what is missing, build, run the end-to-end story (scripts/demo.sh)
#   make test   install what is missing, check imports against Package.swift, build, run every test
SHELL := /bin/bash
SWIFT ?= swift
APT_PACKAGES := libxmlsec1-dev libxml2-dev swtpm swtpm-tools tpm2-tools libtss2-dev libtss2-tcti-swtpm0 libssl-dev openssl \
                libcurl4-openssl-dev curl libsqlite3-dev libmicrohttpd-dev libgnutls28-dev libyaml-dev libnghttp2-dev python3 \
                nginx-light time sqlite3 python3-venv systemd libnss3-tools \
                golang-go golang-golang-x-mod-dev gnutls-bin openjdk-17-jdk-headless python3-cryptography python3-jwt \
                postgresql libpq-dev
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

.PHONY: all deps build demo test test-unit check-imports fuzz bench bench-deps bench-tee bench-gpu bench-workload bench-model bench-replicas clean

all: build

# Installs only the Debian packages that are missing.
deps:
	@missing=$$(for p in $(APT_PACKAGES); do dpkg-query -W -f='$${Status}' $$p 2>/dev/null | grep -q 'install ok installed' || echo $$p; done); \
	if [ -n "$$missing" ]; then \
	  echo "installing:" $$missing; \
	  $(SUDO) apt-get update -q && DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -q $$missing; \
	fi

build: deps
	$(SWIFT) build

demo: build
	scripts/demo.sh

# The end-to-end tests run a second time with every vouchd on PostgreSQL (VOUCH_TEST_STORE), and
# the HTTP server's tests a second time with every server in the pool-with-stream-threads mode.
PG_E2E := EndToEndTests|ReattestationTests|RenewalTests|RelyingPartyTests|PublicationTests|EventStreamTests|WebhookTests|IdentityTests|ServiceAPITests

test: deps check-imports
	$(SWIFT) build --build-tests
	$(SWIFT) test --skip-build
	VOUCH_TEST_STORE=postgres $(SWIFT) test --skip-build --filter 'VouchIntegrationTests.($(PG_E2E))'
	VOUCH_TEST_HTTP_THREADING=streams $(SWIFT) test --skip-build --filter VouchHTTPServerTests

# Each target declares in Package.swift exactly the package targets it imports (seconds, no build).
check-imports: deps
	SWIFT=$(SWIFT) scripts/check-imports.sh

# Only the tests that start no process (parsers, crypto, policy, store).
test-unit: deps
	$(SWIFT) build --build-tests
	$(SWIFT) test --skip-build --skip VouchIntegrationTests

# libFuzzer + AddressSanitizer on every parser of outside bytes, FUZZ_SECONDS each (default 30).
fuzz: deps
	scripts/fuzz.sh

# Only the benchmarks use these (perf: the enrollment profile, "where broker CPU goes"); bench/run.sh
# still runs, and says "perf not available", when they cannot be installed.
BENCH_APT_PACKAGES := linux-perf

bench-deps: deps
	@missing=$$(for p in $(BENCH_APT_PACKAGES); do dpkg-query -W -f='$${Status}' $$p 2>/dev/null | grep -q 'install ok installed' || echo $$p; done); \
	if [ -n "$$missing" ]; then \
	  echo "installing:" $$missing; \
	  DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -q $$missing || echo "could not install $$missing (the bench runs without it)"; \
	fi

# Benchmarks side by side with openssl speed and tpm2_checkquote; updates docs/performance.md.
bench: bench-deps
	bench/run.sh

# Only the SPIFFE Workload API rows (SVIDs served, 1,000 workloads, rotation); updates their section.
bench-workload: deps
	swift build -c release
	bench/workload.sh "$$(swift build -c release --show-bin-path)" out/bench 3

# Only the model-signature rows (vouch model verify beside sha256sum and model-signing); updates their section.
bench-model: deps
	swift build -c release
	bench/model.sh "$$(swift build -c release --show-bin-path)" out/bench

# Only the replica rows (SQLite beside 1, 2 and 3 vouchd replicas on a throwaway PostgreSQL); updates their section.
bench-replicas: deps
	swift build -c release
	bench/replicas.sh "$$(swift build -c release --show-bin-path)" out/bench

# Only the confidential-VM rows (SEV-SNP, TDX beside openssl speed and dcap-qvl); updates their section.
bench-tee: deps
	bench/tee.sh

# Only the GPU and enclave rows (NVIDIA GPU evidence, RIMs, Nitro beside openssl speed and NVIDIA's verifier).
bench-gpu: deps
	bench/gpu.sh

clean:
	rm -rf .build out
