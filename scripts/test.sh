#!/usr/bin/env bash
# Sets up everything the tests use and runs every check: formatting, lints, unit tests, and the
# component and end-to-end tests against the real local stack (scripts/stack.sh).
#
# Works on a fresh machine: installs MariaDB, osmem-server and tansu (tansu builds once per
# machine into ~/.cargo/bin, ~10 min), then tests start the stack themselves.
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
export PATH="$HOME/.cargo/bin:$PATH"

step() { printf '\n==> %s\n' "$*" >&2; }

step "installing the stack's components (skipped when present)"
scripts/stack.sh install

step "cargo fmt --check"
cargo fmt --check

step "cargo clippy --all-targets -- -D warnings"
cargo clippy --locked --all-targets -- -D warnings

step "cargo test (the stack starts on first use)"
# Two cores: two tests at a time, each with its own sluice processes.
cargo test --locked --no-fail-fast -- --test-threads=2
