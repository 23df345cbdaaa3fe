# wp-lite — `make help` lists the targets.
.DEFAULT_GOAL := help
CARGO ?= cargo
DATABASE_URL ?= sqlite://wp-lite.db

help: ## List the targets
	@grep -E '^[a-z][a-zA-Z_-]+:.*## ' $(MAKEFILE_LIST) | awk 'BEGIN {FS = ":.*## "}; {printf "  make %-8s %s\n", $$1, $$2}'

build: ## Build the release binary (target/release/wp-lite)
	$(CARGO) build --release --locked

run: build ## Run the service on $(DATABASE_URL) at http://127.0.0.1:8000
	./target/release/wp-lite --database-url $(DATABASE_URL) serve

test: ## Run every test (unit, HTTP, storage conformance, CLI)
	$(CARGO) test --locked --all-targets -- --test-threads=4

test-ui: ## Browser test of the page (headless Debian chromium via playwright-core) and the OpenAPI validation; needs node + npm
	$(CARGO) build --locked
	cd tests/ui && npm ci && node --test

lint: ## cargo fmt --check and clippy with warnings as errors
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --locked --all-targets -- -D warnings

bench: build ## Run the benchmarks and write BENCHMARKS.md
	./target/release/wp-lite --log-level warn bench --markdown BENCHMARKS.md

bench-postgres: build ## Run the benchmarks on PostgreSQL (WP_LITE_BENCH_POSTGRES_URL) and add them to BENCHMARKS.md
	./target/release/wp-lite --log-level warn --database-url "$${WP_LITE_BENCH_POSTGRES_URL:-postgres://postgres@127.0.0.1:5432/test}" bench --markdown BENCHMARKS.md

.PHONY: help build run test test-ui lint bench bench-postgres
