#!/usr/bin/env bash
# The loader alone against a raw bulk client, in one run (docs/benchmarks.md). Run after
# `SLUICE_DEMO_EXIT=1 scripts/demo.sh` (it copies the demo's `orders`): a source-only Sluice
# snapshots a copy of 20,000 orders into a topic of their own (inserts only), then, per run, a
# loader-only Sluice with a fresh consumer group reads that topic into a fresh index while
# nothing else runs, and scripts/raw_bulk.py writes the same documents into a scratch index
# (right after the loader in odd runs, right before it in even ones). Extra environment
# (e.g. SLUICE_LOADER__MAX_IN_FLIGHT=1) goes to Sluice; SLUICE_BENCH_BIN measures another build.
#
#   scripts/loader_bench.sh [RUNS]
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
runs=${1:-3}
docs=20000
demo=$(ls -td .stack/demo/run-* 2>/dev/null | head -1)
[ -n "$demo" ] || { echo "loader_bench: run SLUICE_DEMO_EXIT=1 scripts/demo.sh first" >&2; exit 1; }
eval "$(scripts/stack.sh env)"
es=$SLUICE_STACK_ELASTICSEARCH_URL
BIN=${SLUICE_BENCH_BIN:-target/release/sluice} # another build to compare
count() { # cheap enough to poll: no interpreter start-up
  local c
  c=$(curl -fsS "$es/$1/_count" 2>/dev/null | sed -n 's/.*"count":\([0-9]*\).*/\1/p')
  echo "${c:-0}"
}
sql() {
  mariadb --no-defaults --batch --skip-column-names -h "$SLUICE_STACK_MYSQL_HOST" \
    -P "$SLUICE_STACK_MYSQL_PORT" -u "$SLUICE_STACK_MYSQL_ADMIN_USER" \
    -p"$SLUICE_STACK_MYSQL_ADMIN_PASSWORD" -e "$1"
}

# The source side, once: 20,000 orders snapshotted into a topic of their own.
run=$ROOT/.stack/loaderbench/run-$(date +%Y%m%d-%H%M%S)
mkdir -p "$run"
sql "DROP DATABASE IF EXISTS loaderbench; CREATE DATABASE loaderbench;
     CREATE TABLE loaderbench.orders LIKE shop.orders;
     INSERT INTO loaderbench.orders SELECT * FROM shop.orders ORDER BY id LIMIT $docs;"
sed -e 's/^tables = .*/tables = ["loaderbench.orders"]/' \
  -e "s|^state_dir = .*|state_dir = \"$run/state\"|" \
  -e "s/^topic_prefix = .*/topic_prefix = \"loaderbench$(date +%s)\"/" \
  "$demo/sluice.toml" >"$run/sluice.toml"
# A free port each: the demo or another run may hold the default one.
printf '\n[metrics]\nlisten = "127.0.0.1:0"\n' >>"$run/sluice.toml"
"$BIN" run --role source --config "$run/sluice.toml" 2>"$run/source.log" &
pid=$!
until grep -q "snapshot stored" "$run/source.log"; do sleep 0.2; done
kill -INT "$pid"; wait "$pid" || true

# Which client writes first alternates: odd runs have the loader first and the raw client
# right after (with the loader's documents); even runs have the raw client first, with the
# documents of the previous run's loader, so neither always meets the server warmer.
prev=""
for i in $(seq 1 "$runs"); do
  tag="loaderbench$(date +%s%3N)"
  if [ $((i % 2)) -eq 0 ]; then
    raw=$(python3 scripts/raw_bulk.py "$es" "$docs" "$prev")
    order="raw first"
  fi
  # The raw client always runs beside the loader index it reads, the loader beside none.
  [ -z "$prev" ] || curl -fsS -o /dev/null -X DELETE "$es/$prev"
  RUST_LOG=info,sluice::load=debug SLUICE_LOADER__GROUP_ID=$tag \
    SLUICE_LOADER__INDEX="$tag-{table}" SLUICE_LOADER__INSTANCE_ID="" \
    "$BIN" run --role loader --config "$run/sluice.toml" >"$run/$tag.log" 2>&1 &
  pid=$!
  index="$tag-orders"
  # Polled seldom: a _count costs the index server time the loader is measured on.
  while [ "$(count "$index")" -lt "$docs" ]; do sleep 1; done
  kill -INT "$pid"; wait "$pid" || true
  prev=$index
  if [ $((i % 2)) -eq 1 ]; then
    # The same documents, written by the raw client right after.
    raw=$(python3 scripts/raw_bulk.py "$es" "$docs" "$index")
    order="loader first"
  fi
  # From the loader's log: first bulk sent -> last bulk settled.
  loader_ms=$(sed 's/\x1b\[[0-9;]*m//g' "$run/$tag.log" | python3 -c '
import sys, datetime
docs, done, first = int(sys.argv[1]), 0, None
for line in sys.stdin:
    if "batch applied" not in line:
        continue
    f = dict(w.split("=", 1) for w in line.split() if "=" in w)
    t = datetime.datetime.fromisoformat(line.split()[0].replace("Z", "+00:00"))
    if first is None:
        first = t - datetime.timedelta(milliseconds=int(f["apply_ms"]))
    done += int(f["records"])
    if done >= docs:
        print(int((t - first).total_seconds() * 1000))
        break
' "$docs")
  raw_rate=$(sed -e 's/.*= \([0-9]*\) docs\/s.*/\1/' <<<"$raw")
  loader_rate=$((docs * 1000 / loader_ms))
  echo "$order: loader: $docs docs in $loader_ms ms = $loader_rate docs/s; $raw; loader/raw = $(python3 -c "print(f'{$loader_rate / $raw_rate:.2f}')")"
done
curl -fsS -o /dev/null -X DELETE "$es/$prev"
