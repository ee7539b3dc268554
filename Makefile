# skyhost — the two commands are `make run` and `make test`.
SHELL := /bin/bash
CARGO ?= cargo
SKYHOST_DIR ?= .skyhost
PORT ?= 8080

.PHONY: run test test-rust lint fmt build fuzz bench clean-local

## run: build, start local multi-region mode, deploy examples/site, print what to try
run:
	$(CARGO) build -p skyhost-cli
	./tests/harness/run-local.sh

## test: install test tools, start moto + redis-server, run every test, stop them
test:
	./tests/harness/with-servers.sh $(MAKE) --no-print-directory test-rust

test-rust:
	$(CARGO) test --workspace --no-fail-fast

lint:
	$(CARGO) fmt --all --check
	$(CARGO) clippy --workspace --all-targets -- -D warnings

fmt:
	$(CARGO) fmt --all

build:
	$(CARGO) build --workspace

clean-local:
	rm -rf $(SKYHOST_DIR)
