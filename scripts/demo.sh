#!/usr/bin/env bash
# The demo, set up and run by one command: starts the local stack, loads the demo `shop`
# schema (20,000 orders), and runs Sluice on it: the snapshot copies the tables into the search
# index, then a burst of live inserts, updates and deletes streams through the binlog. Prints
# the figures it measured and keeps streaming until Ctrl-C.
#
#   scripts/demo.sh             run, then stream until Ctrl-C
#   SLUICE_DEMO_EXIT=1 scripts/demo.sh   stop after the figures (used for docs/benchmarks.md)
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
export PATH="$HOME/.cargo/bin:$PATH"

say() { printf '\033[1mdemo:\033[0m %s\n' "$*" >&2; }
die() { printf 'demo: error: %s\n' "$*" >&2; exit 1; }
now_ms() { date +%s%3N; }

say "building sluice (release)"
cargo build --release --quiet --bin sluice
BIN=$ROOT/target/release/sluice
SLUICE_BIN=$BIN scripts/stack.sh up
eval "$(scripts/stack.sh env)"

sql() {
  mariadb --no-defaults --default-character-set=utf8mb4 --batch --skip-column-names \
    -h "$SLUICE_STACK_MYSQL_HOST" -P "$SLUICE_STACK_MYSQL_PORT" \
    -u "$SLUICE_STACK_MYSQL_ADMIN_USER" -p"$SLUICE_STACK_MYSQL_ADMIN_PASSWORD" "$@"
}
es() { curl -fsS "$@"; }
es_count() { # index -> document count (0 while the index does not exist)
  es "$SLUICE_STACK_ELASTICSEARCH_URL/$1/_count" 2>/dev/null \
    | python3 -c 'import json,sys; print(json.load(sys.stdin)["count"])' 2>/dev/null || echo 0
}

say "loading the demo schema and seed (migrations/)"
for f in migrations/001_demo_schema.sql migrations/002_demo_seed.sql migrations/003_sluice_signal.sql; do
  sql <"$f"
done
for index in shop.customers shop.orders; do
  curl -fsS -o /dev/null -X DELETE "$SLUICE_STACK_ELASTICSEARCH_URL/$index" 2>/dev/null || true
done

RUN=$ROOT/.stack/demo/run-$(date +%Y%m%d-%H%M%S)
mkdir -p "$RUN"
PREFIX=demo$(date +%s)
cat >"$RUN/sluice.toml" <<TOML
tables = ["shop.customers", "shop.orders"]
[source]
host = "$SLUICE_STACK_MYSQL_HOST"
port = $SLUICE_STACK_MYSQL_PORT
user = "$SLUICE_STACK_MYSQL_USER"
password = "$SLUICE_STACK_MYSQL_PASSWORD"
server_id = 5401
state_dir = "$RUN/state"
[kafka]
brokers = "$SLUICE_STACK_KAFKA_BROKERS"
topic_prefix = "$PREFIX"
[registry]
url = "$SLUICE_STACK_REGISTRY_URL"
[elasticsearch]
url = "$SLUICE_STACK_ELASTICSEARCH_URL"
TOML

say "starting sluice (config $RUN/sluice.toml, log $RUN/sluice.log)"
start=$(now_ms)
# Its own session: Ctrl-C reaches only this script, which forwards a single SIGTERM (a
# second signal would make sluice exit at once instead of draining).
setsid "$BIN" run --config "$RUN/sluice.toml" 2>"$RUN/sluice.log" &
SLUICE=$!
stop_sluice() {
  trap - INT TERM EXIT
  say "stopping sluice (it drains and checkpoints)"
  kill -TERM "$SLUICE" 2>/dev/null || true
  wait "$SLUICE" && say "sluice stopped cleanly" || say "sluice exited with status $?; see $RUN/sluice.log"
  exit 0
}
trap stop_sluice INT TERM
# On any failure of this script, sluice does not outlive it.
trap 'kill -TERM "$SLUICE" 2>/dev/null || true' EXIT

wait_equal() { # index expected-count timeout-s
  local deadline=$((SECONDS + $3))
  while [ "$(es_count "$1")" != "$2" ]; do
    kill -0 "$SLUICE" 2>/dev/null || { tail -20 "$RUN/sluice.log" >&2; die "sluice exited"; }
    [ $SECONDS -lt $deadline ] || die "$1 has $(es_count "$1") documents, expected $2, after $3 s"
    sleep 0.2
  done
}

orders=$(sql -e "SELECT COUNT(*) FROM shop.orders")
customers=$(sql -e "SELECT COUNT(*) FROM shop.customers")
wait_equal shop.orders "$orders" 600
wait_equal shop.customers "$customers" 600
snap_ms=$(($(now_ms) - start))
say "snapshot: $((orders + customers)) rows searchable $snap_ms ms after start ($(((orders + customers) * 1000 / snap_ms)) rows/s, start-up included)"

say "live burst: 5,000 inserts, 2,000 updates, 1,000 deletes in 80 transactions"
burst_start=$(now_ms)
{
  for i in $(seq 50); do
    echo "START TRANSACTION;"
    echo "INSERT INTO shop.orders (customer_id, status, total, quantity, note, ordered_on, created_at)
          SELECT 1 + seq % 1000, 'new', seq % 500 + 0.99, 1 + seq % 3, CONCAT('live ', $i, '/', seq),
                 CURRENT_DATE, NOW(6) FROM seq_1_to_100;"
    echo "COMMIT;"
  done
  for i in $(seq 20); do
    echo "UPDATE shop.orders SET status = 'shipped', total = total + 1 WHERE id % 20 = $i - 1 AND id <= 2000;"
  done
  for i in $(seq 10); do
    echo "DELETE FROM shop.orders WHERE id > 2000 AND id <= 12000 AND id % 100 = $i;"
  done
} | sql shop
committed=$(now_ms)
orders=$(sql -e "SELECT COUNT(*) FROM shop.orders")
wait_equal shop.orders "$orders" 600
burst_ms=$(($(now_ms) - burst_start))
say "live burst: index holds the table's $orders orders ${burst_ms} ms after the burst began, $(($(now_ms) - committed)) ms after its last commit"

for t in customers orders; do
  say "shop.$t: table $(sql -e "SELECT COUNT(*) FROM shop.$t") rows, index $(es_count shop.$t) documents"
done

say "commit-to-searchable: 2,000 single-row commits at 100/s"
mysql_args=$(python3 -c 'import json,sys; print(json.dumps(sys.argv[1:]))' mariadb --no-defaults \
  --default-character-set=utf8mb4 --batch --skip-column-names -h "$SLUICE_STACK_MYSQL_HOST" \
  -P "$SLUICE_STACK_MYSQL_PORT" -u "$SLUICE_STACK_MYSQL_ADMIN_USER" -p"$SLUICE_STACK_MYSQL_ADMIN_PASSWORD")
first=$(($(sql -e "SELECT MAX(id) FROM shop.orders") + 1000))
python3 - "$(python3 scripts/latency.py commits "$mysql_args" "$SLUICE_STACK_ELASTICSEARCH_URL" \
  shop.orders shop.orders "$first" 2000 100)" <<'PY' >&2
import json, sys
r = json.loads(sys.argv[1])
print(f"commit-to-searchable over {r['n']} single-row commits at {r['rate']:.0f}/s: "
      f"p50 {r['p50']:.0f} ms, p95 {r['p95']:.0f} ms, p99 {r['p99']:.0f} ms, max {r['max']:.0f} ms")
PY
id=$(sql -e "SELECT MAX(id) FROM shop.orders")

say "a document (GET shop.orders/_doc/$id):"
es "$SLUICE_STACK_ELASTICSEARCH_URL/shop.orders/_doc/$id" | python3 -m json.tool >&2

if [ -n "${SLUICE_DEMO_EXIT:-}" ]; then stop_sluice; fi
say "streaming; change shop.orders (e.g. scripts/stack.sh env, then mariadb -P 13306 ...) and watch the index; Ctrl-C stops"
wait "$SLUICE"
