#!/usr/bin/env bash
# `sluice verify` of a large table against its index, with a raw `SELECT *` of the table and a
# raw scroll over the index (every document, full `_source`) measured in the same run
# (docs/benchmarks.md). The first run loads the table (ROWS rows, default 1,000,000) and
# streams it into its index with Sluice, which takes a while; later runs reuse both. The table,
# its topic and its index stay in the stack (a 1 M-record topic slows tansu's SQLite storage,
# and osmem-server holds the documents in memory): reset the stack before running the tests
# (`scripts/stack.sh down`, remove `.stack/tansu/tansu.db*`, `scripts/stack.sh up`).
#
#   scripts/verify_bench.sh [ROWS]
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
export PATH="$HOME/.cargo/bin:$PATH"
rows=${1:-1000000}
cargo build --release --quiet --bin sluice
BIN=$ROOT/target/release/sluice
SLUICE_BIN=$BIN scripts/stack.sh up >&2
eval "$(scripts/stack.sh env)"
es=$SLUICE_STACK_ELASTICSEARCH_URL
index=verifybench.items
dir=$ROOT/.stack/verifybench
mkdir -p "$dir"
sql() {
  mariadb --no-defaults --batch --skip-column-names -h "$SLUICE_STACK_MYSQL_HOST" \
    -P "$SLUICE_STACK_MYSQL_PORT" -u "$SLUICE_STACK_MYSQL_ADMIN_USER" \
    -p"$SLUICE_STACK_MYSQL_ADMIN_PASSWORD" "$@"
}
count() {
  local c
  c=$(curl -fsS "$es/$index/_count" 2>/dev/null | sed -n 's/.*"count":\([0-9]*\).*/\1/p')
  echo "${c:-0}"
}
{
  scripts/stack.sh config verifybench.items 7391 "$dir/state" verifybench
  printf '[metrics]\nlisten = "127.0.0.1:0"\n'
} >"$dir/sluice.toml"

if [ "$(sql -e "SELECT COUNT(*) FROM verifybench.items" 2>/dev/null || echo 0)" != "$rows" ] \
  || [ "$(count)" != "$rows" ]; then
  echo "verify_bench: loading $rows rows and streaming them into $index (once)" >&2
  rm -rf "$dir/state"
  curl -fsS -o /dev/null -X DELETE "$es/$index" 2>/dev/null || true
  sql -e "DROP DATABASE IF EXISTS verifybench; CREATE DATABASE verifybench;
    CREATE TABLE verifybench.items (id INT PRIMARY KEY, name VARCHAR(40), qty INT,
      price DECIMAL(10,2), at DATETIME(3), note VARCHAR(100));
    USE verifybench;
    INSERT INTO verifybench.items SELECT seq, CONCAT('item ', seq), seq % 100, seq / 7,
      '2026-01-01 00:00:00' + INTERVAL seq SECOND, REPEAT('x', seq % 50) FROM seq_1_to_$rows;"
  SLUICE_KAFKA__TOPIC_PREFIX="verifybench$(date +%s)" "$BIN" run --config "$dir/sluice.toml" \
    2>"$dir/load.log" &
  pid=$!
  while [ "$(count)" -lt "$rows" ]; do sleep 10; done
  kill -INT "$pid"
  wait "$pid" || true
fi

start=$(date +%s%N)
sql --quick -e "SELECT * FROM verifybench.items" >/dev/null
select_ns=$(($(date +%s%N) - start))
start=$(date +%s%N)
python3 - "$es" "$index" <<'PY'
import json, sys, urllib.request
es, index = sys.argv[1], sys.argv[2]
def post(path, body):
    req = urllib.request.Request(es + path, json.dumps(body).encode(), {"Content-Type": "application/json"})
    return json.load(urllib.request.urlopen(req))
r = post(f"/{index}/_search?scroll=5m", {"size": 5000, "sort": ["_doc"]})
n = 0
while r["hits"]["hits"]:
    n += len(r["hits"]["hits"])
    r = post("/_search/scroll", {"scroll": "5m", "scroll_id": r["_scroll_id"]})
print(n, file=sys.stderr)
PY
scan_ns=$(($(date +%s%N) - start))
/usr/bin/time -v -o "$dir/time.txt" "$BIN" verify --config "$dir/sluice.toml" >"$dir/verify.out" 2>"$dir/verify.log" || true
cat "$dir/verify.out"
elapsed=$(sed -n 's/.*Elapsed (wall clock) time (h:mm:ss or m:ss): //p' "$dir/time.txt")
rss_kb=$(sed -n 's/.*Maximum resident set size (kbytes): //p' "$dir/time.txt")
secs=$(python3 -c "import sys; p=sys.argv[1].split(':'); print(sum(float(x)*60**i for i,x in enumerate(reversed(p))))" "$elapsed")
python3 - "$rows" "$select_ns" "$scan_ns" "$secs" "$rss_kb" <<'PY'
import sys
rows, select_ns, scan_ns, secs, rss = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3]), float(sys.argv[4]), int(sys.argv[5])
sel, scan, ver = rows / (select_ns / 1e9), rows / (scan_ns / 1e9), rows / secs
print(f"raw SELECT *: {sel:,.0f} rows/s; raw index scroll: {scan:,.0f} docs/s; "
      f"verify: {ver:,.0f} rows/s = {ver / min(sel, scan):.2f} of the slower; peak RSS {rss / 1024:.0f} MiB")
PY
