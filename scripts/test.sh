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

# A CI checkout is built once: incremental caches would only take disk.
if [ -n "${CI:-}" ]; then export CARGO_INCREMENTAL=0; fi

# A full run writes about 3 GiB (the test build, MariaDB's binlogs, the broker's and the index
# server's data). On a full disk MariaDB waits for space instead of failing, so tests would hang
# until their timeouts: refuse to start instead.
need_mib=4096
free_mib=$(df --output=avail -BM "$ROOT" | tail -1 | tr -dc 0-9)
if [ "$free_mib" -lt "$need_mib" ]; then
    echo "scripts/test.sh: only ${free_mib} MiB free on the disk holding $ROOT; a test run" \
        "needs about ${need_mib} MiB (more the first time, while tansu builds): free space" \
        "(cargo clean, rm -rf .stack after scripts/stack.sh down) and run it again" >&2
    exit 1
fi

step "installing the stack's components (skipped when present)"
scripts/stack.sh install

step "cargo fmt --check"
cargo fmt --check

step "cargo clippy --all-targets -- -D warnings"
cargo clippy --locked --all-targets -- -D warnings

step "cargo test (the stack starts on first use)"
# Two cores: two tests at a time, each with its own sluice processes.
cargo test --locked --no-fail-fast -- --test-threads=2
