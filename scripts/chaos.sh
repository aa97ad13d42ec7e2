#!/usr/bin/env bash
# The chaos suite's long run (docs/reliability.md): a seeded OLTP writer on three tables of
# 200,000 rows while faults of every kind hit the pipeline's processes, servers and links,
# then `sluice verify` judges the index against the tables. The short run is part of the test
# command (scripts/test.sh); this one runs on demand:
#
#   scripts/chaos.sh [--seed N] [--rows N] [--faults N] [--minutes N] [--max-minutes N]
#                    [--kinds kill-source,cut,...] [--ddl N] [--rate N] [--report FILE]
#
#   --faults N       faults of each kind (default 100)
#   --rate N         writer statements a second (default 5: osmem-server falls behind on
#                    updates of 200,000-document indexes at more)
#   --minutes N      go on injecting until at least this long (default 30)
#   --max-minutes N  stop injecting after this long even if faults are left (default: none)
#   --kinds LIST     fault kinds (default all): kill-source, kill-loader,
#                    kill-loader-rebalancing, kill-broker, kill-mysql, kill-registry,
#                    stop-index, empty-index, cut, stall, latency; `kind=N` gives a kind
#                    its own count (empty-index=5: each one copies every table again)
#   --report FILE    also write the Markdown report there
#
# Every component is private to the run (its own MariaDB, tansu, registry and osmem-server,
# behind fault proxies); the shared stack is only used to find the installed programs. The
# seed, each fault and the verdict are printed; a failed run keeps its logs (the path is
# printed at the start).
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
export PATH="$HOME/.cargo/bin:$PATH"

export SLUICE_CHAOS_ROWS=200000 SLUICE_CHAOS_FAULTS=100 SLUICE_CHAOS_MINUTES=30
export SLUICE_CHAOS_DDL=10 SLUICE_CHAOS_RATE=5
while [ $# -gt 0 ]; do
  case "$1" in
    --seed) export SLUICE_CHAOS_SEED="$2" ;;
    --rows) export SLUICE_CHAOS_ROWS="$2" ;;
    --faults) export SLUICE_CHAOS_FAULTS="$2" ;;
    --minutes) export SLUICE_CHAOS_MINUTES="$2" ;;
    --max-minutes) export SLUICE_CHAOS_MAX_MINUTES="$2" ;;
    --kinds) export SLUICE_CHAOS_KINDS="$2" ;;
    --ddl) export SLUICE_CHAOS_DDL="$2" ;;
    --rate) export SLUICE_CHAOS_RATE="$2" ;;
    --report) export SLUICE_CHAOS_REPORT="$(realpath -m "$2")" ;;
    -h|--help) sed -n '2,24p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "chaos.sh: unknown argument $1 (see --help)" >&2; exit 2 ;;
  esac
  shift 2
done

scripts/stack.sh install
# Release builds, as in production: debug builds of the source and loader would take the
# CPU the index server needs.
exec cargo test --release --locked --test chaos -- --nocapture
