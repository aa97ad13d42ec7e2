#!/usr/bin/env bash
# Commit-to-searchable latency of the whole pipeline against the stack's own floor, in one
# run (docs/benchmarks.md): the floor first (a raw produce -> consume hop on the same broker,
# a raw one-document write + realtime GET on the same index server, the index server alone at
# 500/s, and both hops at 500/s without Sluice: a raw produce -> consume -> _bulk loop), then
# single-row commits at 100, 500 and 2,000 a second and in bursts, each with Sluice's stage
# breakdown; then the resident memory after 60 s at 500/s and the CPU of the idle pipeline.
#
#   scripts/latency_bench.sh [one|two]     one `sluice run` (default), or source and loader
#                                          as two processes
#
# Environment: SLUICE_* variables reach Sluice (e.g. SLUICE_LOADER__LINGER_MS=20);
# BENCH_KAFKA_PROPERTIES adds `key = "value"` lines to [kafka.properties] (the fetch wait is
# SLUICE_LOADER__FETCH_WAIT_MS, which the floor's consumer uses too); BENCH_QUICK=1
# runs a tenth of each load (for trying settings, not for figures); BENCH_SLUICE=/abs/path
# measures that build of sluice instead of this checkout's (a before/after comparison).
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
export PATH="$HOME/.cargo/bin:$PATH"
mode=${1:-one}
case "$mode" in one|two) ;; *) echo "usage: scripts/latency_bench.sh [one|two]" >&2; exit 2 ;; esac
scale=1
[ -n "${BENCH_QUICK:-}" ] && scale=10

say() { printf 'latency: %s\n' "$*" >&2; }
cargo build --release --quiet --bin sluice
BIN=${BENCH_SLUICE:-$ROOT/target/release/sluice}
[ -x "$BIN" ] || { echo "latency_bench.sh: $BIN is not an executable (BENCH_SLUICE takes an absolute path)" >&2; exit 2; }
SLUICE_BIN=$ROOT/target/release/sluice scripts/stack.sh up
eval "$(scripts/stack.sh env)"
es=$SLUICE_STACK_ELASTICSEARCH_URL
mysql=(mariadb --no-defaults --batch --skip-column-names -h "$SLUICE_STACK_MYSQL_HOST"
  -P "$SLUICE_STACK_MYSQL_PORT" -u "$SLUICE_STACK_MYSQL_ADMIN_USER"
  -p"$SLUICE_STACK_MYSQL_ADMIN_PASSWORD")
mysql_json=$(python3 -c 'import json,sys; print(json.dumps(sys.argv[1:]))' "${mysql[@]}")
probe() { python3 scripts/latency.py "$@"; }

run=$ROOT/.stack/latency/run-$(date +%Y%m%d-%H%M%S)-$mode
mkdir -p "$run"
"${mysql[@]}" -e "DROP DATABASE IF EXISTS latbench; CREATE DATABASE latbench;
  CREATE TABLE latbench.events (id BIGINT PRIMARY KEY, committed DATETIME(6) NOT NULL,
                                note VARCHAR(64) NOT NULL)"
curl -fsS -o /dev/null -X DELETE "$es/latbench.events" 2>/dev/null || true
ports=$(python3 -c 'import socket
s = [socket.socket() for _ in range(2)]
for x in s: x.bind(("127.0.0.1", 0))
for x in s: print(x.getsockname()[1])')
read -r -d '' port1 port2 <<<"$ports" || true
{
  scripts/stack.sh config latbench.events 5402 "$run/state" "latbench$(date +%s)"
  printf '[kafka.properties]\n%s\n[metrics]\nlisten = "127.0.0.1:%s"\n' \
    "${BENCH_KAFKA_PROPERTIES:-}" "$port1"
} >"$run/sluice.toml"

pids=()
metrics=()
start() { # log-name args...
  local name=$1; shift
  "$BIN" "$@" --config "$run/sluice.toml" 2>"$run/$name.log" &
  pids+=($!)
}
if [ "$mode" = one ]; then
  start sluice run
  metrics+=("http://127.0.0.1:$port1/metrics")
else
  start source run --role source
  SLUICE_METRICS__LISTEN=127.0.0.1:$port2 start loader run --role loader
  metrics+=("http://127.0.0.1:$port1/metrics" "http://127.0.0.1:$port2/metrics")
fi
trap 'kill -INT "${pids[@]}" 2>/dev/null || true; wait || true' EXIT
say "sluice ($mode process(es)) logs in $run"

# Ready once a first row is searchable (snapshot of the empty table, group joined).
"${mysql[@]}" -e "INSERT INTO latbench.events VALUES (0, NOW(6), 'ready')"
deadline=$((SECONDS + 120))
until curl -fsS -o /dev/null "$es/latbench.events/_doc/0" 2>/dev/null; do
  [ $SECONDS -lt $deadline ] || { tail -20 "$run"/*.log >&2; exit 1; }
  sleep 0.2
done

# The floor's consumer waits as the loader's does.
fetch_wait=${SLUICE_LOADER__FETCH_WAIT_MS:-5}
say "floor: broker hop (fetch.wait.max.ms $fetch_wait), index write + GET"
hop=$(probe kafka-hop "$SLUICE_STACK_KAFKA_BROKERS" $((2000 / scale)) 500 "$fetch_wait")
write=$(probe index-write "$es" $((1000 / scale)) 100)
# The index server at 500/s with nothing in front of it: the best any loader can do there.
say "index server alone at 500/s: every document due as one _bulk"
index_load=$(probe index-load "$es" $((30000 / scale)) 500)
# The same hops at 500/s without Sluice: what the broker and the index server give at that
# load under the same poller.
say "raw pipeline at 500/s: produce -> consume -> _bulk, same poller"
raw=$(probe raw-pipeline "$SLUICE_STACK_KAFKA_BROKERS" "$es" $((30000 / scale)) 500 "$fetch_wait")
echo "{\"floor_hop\": $hop, \"floor_index\": $write, \"index_load_500\": $index_load,
  \"raw_pipeline_500\": $raw}" \
  >"$run/results.json"

next=1
load() { # name count rate [burst every]
  local name=$1 count=$(($2 / scale)) out
  probe stages "${metrics[@]}" -- --save "$run/stages-before.json"
  out=$(probe commits "$mysql_json" "$es" latbench.events latbench.events "$next" "$count" "$3" "${@:4}")
  next=$((next + count))
  echo "{\"$name\": $out, \"stages\": $(probe stages "${metrics[@]}" -- "$run/stages-before.json")}" \
    | tee -a "$run/results.json"
}
rss() { # kB of each sluice process
  for p in "${pids[@]}"; do awk '/VmRSS/ {printf "%d ", $2}' "/proc/$p/status"; done
}
cpu_ticks() {
  for p in "${pids[@]}"; do awk '{printf "%d ", $14 + $15}' "/proc/$p/stat"; done
}

say "steady 100/s"; load steady-100 2000 100
say "steady 500/s for 60 s"; load steady-500 30000 500
echo "{\"rss_kb_after_500\": \"$(rss)\"}" | tee -a "$run/results.json"
say "steady 2,000/s"; load steady-2000 20000 2000
say "bursts of 500 every 2 s"; load bursts 10000 0 500 2
say "idle: CPU over 30 s"
sleep 10
before=$(cpu_ticks); sleep 30; after=$(cpu_ticks)
python3 - "$before" "$after" "$(getconf CLK_TCK)" <<'PY' | tee -a "$run/results.json"
import json, sys
b, a, hz = sys.argv[1].split(), sys.argv[2].split(), int(sys.argv[3])
print(json.dumps({"idle_cpu_percent": [round((int(y) - int(x)) / hz / 30 * 100, 2) for x, y in zip(b, a)]}))
PY
say "results: $run/results.json"
