# skyhost — the two commands are `make run` and `make test`.
SHELL := /bin/bash
CARGO ?= cargo
SKYHOST_DIR ?= .skyhost
PORT ?= 8080

.PHONY: run test test-rust test-template lint fmt build fuzz mutants bench clean-local package sam-build deploy-primary deploy-replica

## run: build, start local multi-region mode, deploy examples/site, print what to try
run:
	$(CARGO) build -p skyhost-cli
	./scripts/run-local.sh

## test: install test tools, start moto + redis-server, run every test, stop them
test:
	./tests/harness/with-servers.sh $(MAKE) --no-print-directory -k test-rust test-template

test-rust:
	$(CARGO) test --workspace --no-fail-fast

# template.yaml against cfn-lint (pinned) and against the code; needs the test venv. The IAM
# test reads `cargo metadata --offline`, which needs every platform's crates fetched, not only
# the ones this machine's build downloaded.
test-template:
	$(CARGO) fetch --quiet
	.cache/venv/bin/python -m pytest -q tests/template

lint:
	$(CARGO) fmt --all --check
	$(CARGO) clippy --workspace --all-targets -- -D warnings

fmt:
	$(CARGO) fmt --all

build:
	$(CARGO) build --workspace

## mutants: mutation testing of the pure code (cargo-mutants, pinned; docs/testing.md). Not
## part of `make test`: about an hour. MUTANTS_GROUPS=meta|origin|rules runs part of it.
MUTANTS_GROUPS ?=
mutants:
	./tests/mutants/run.sh $(MUTANTS_GROUPS)

## bench: install nginx, wrk and redis-server if missing, build release once, run every benchmark, write BENCHMARKS.md
bench:
	./bench/run.sh

clean-local:
	rm -rf $(SKYHOST_DIR)

FUZZ_SECONDS ?= 60
FUZZ_TARGETS ?= parse_redirects parse_headers parse_config match_request decode_path range_conditional notify_signature

## fuzz: run each cargo-fuzz target in fuzz/ for FUZZ_SECONDS from its seeds (needs nightly and cargo-fuzz)
fuzz:
	@for t in $(FUZZ_TARGETS); do \
		mkdir -p fuzz/corpus/$$t; \
		$(CARGO) +nightly fuzz run $$t fuzz/corpus/$$t fuzz/seeds/$$t -- -max_total_time=$(FUZZ_SECONDS) || exit 1; \
	done

# --- AWS: build and deploy with SAM (see docs/deploy.md) ---------------------------------
SAM_VENV := .cache/samvenv
SAM := $(SAM_VENV)/bin/sam
# sam runs `cargo lambda`, which finds zig through the venv's python: the venv goes first on PATH.
SAM_ENV := PATH="$(CURDIR)/$(SAM_VENV)/bin:$$PATH" SAM_CLI_TELEMETRY=0
PRIMARY_REGION ?= us-west-2
LAMBDA_BINS := skyhost-origin skyhost-replicator skyhost-asset-copier skyhost-domains

$(SAM):
	python3 -m venv $(SAM_VENV)
	$(SAM_VENV)/bin/pip install --quiet --disable-pip-version-check aws-sam-cli==1.170.0 cargo-lambda==1.9.2 ziglang==0.17.1
	rustup target add aarch64-unknown-linux-gnu

## package: the four Lambda binaries for arm64 ($$CARGO_TARGET_DIR/lambda/<bin>/bootstrap)
package: $(SAM)
	$(SAM_ENV) cargo lambda build --release --arm64 $(addprefix --bin ,$(LAMBDA_BINS))

## sam-build: build template.yaml's four functions into .aws-sam/build
sam-build: $(SAM)
	$(SAM_ENV) $(SAM) build --template-file template.yaml

deploy-primary: sam-build
	$(SAM_ENV) $(SAM) deploy --config-env $(PRIMARY_REGION)

deploy-replica: sam-build
	@test -n "$(REGION)" || { echo "usage: make deploy-replica REGION=eu-central-1" >&2; exit 2; }
	@test "$(REGION)" != "$(PRIMARY_REGION)" || { echo "$(REGION) is the primary: use make deploy-primary" >&2; exit 2; }
	$(SAM_ENV) $(SAM) deploy --config-env $(REGION)
