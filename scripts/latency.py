#!/usr/bin/env python3
"""Commit-to-searchable latency at a steady offered rate (docs/benchmarks.md).

Inserts single-row transactions into shop.orders at RATE rows/s through one mariadb client
process; each row carries its commit time (`created_at = NOW(6)`, UTC, same machine clock).
A poller gets (_mget) every 10 ms the written ids it has not seen yet
and records when each became searchable. Prints p50/p95/p99/max over COUNT changes.

    python3 scripts/latency.py MYSQL_ARGS_JSON ES_URL [COUNT] [RATE]
"""
import json
import subprocess
import sys
import threading
import time
import urllib.request
from datetime import datetime, timezone

mysql_args = json.loads(sys.argv[1])
es = sys.argv[2]
count = int(sys.argv[3]) if len(sys.argv) > 3 else 2000
rate = float(sys.argv[4]) if len(sys.argv) > 4 else 100.0


written = []  # ids in commit order, read back from the client
seen = {}  # id -> (committed, searchable) in epoch seconds
done = threading.Event()


def poll():
    # Partitions reach the index in any order, and auto-increment ids have gaps: ask for
    # exactly the ids written and not yet seen, by id (cheap for the index server, so the
    # poller does not slow down what it measures).
    while not done.is_set():
        pending = [i for i in written[:] if i not in seen][:1000]
        if pending:
            body = json.dumps({"ids": [str(i) for i in pending]}).encode()
            req = urllib.request.Request(f"{es}/shop.orders/_mget", data=body,
                                         headers={"Content-Type": "application/json"})
            with urllib.request.urlopen(req) as r:
                docs = json.load(r)["docs"]
            now = time.time()
            for d in docs:
                if not d.get("found"):
                    continue
                src = d["_source"]
                committed = datetime.fromisoformat(src["created_at"]).replace(tzinfo=timezone.utc).timestamp()
                seen.setdefault(src["id"], (committed, now))
        if len(seen) >= count:
            done.set()
        time.sleep(0.01)


def read_ids(out):
    for line in out:
        written.append(int(line))


# --unbuffered: each id is printed as its INSERT returns, not when a 4 KB buffer fills.
client = subprocess.Popen(mysql_args + ["--unbuffered"], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
reader = threading.Thread(target=read_ids, args=(client.stdout,))
reader.start()
poller = threading.Thread(target=poll)
poller.start()
client.stdin.write("SET time_zone = '+00:00';\n")
t0 = time.monotonic()
for i in range(count):
    delay = t0 + i / rate - time.monotonic()
    if delay > 0:
        time.sleep(delay)
    client.stdin.write(
        "INSERT INTO shop.orders (customer_id, status, total, quantity, note, ordered_on, created_at) "
        f"VALUES (1, 'latency', 1.00, 1, 'probe {i}', CURRENT_DATE, NOW(6)); SELECT LAST_INSERT_ID();\n")
    client.stdin.flush()
client.stdin.close()
client.wait()
reader.join()
done.wait(timeout=120)
done.set()
poller.join()

lat = sorted((s - c) * 1000 for c, s in seen.values())
if len(lat) < count:
    sys.exit(f"only {len(lat)} of {count} rows became searchable within 120 s")


def pct(p):
    return lat[min(len(lat) - 1, int(p / 100 * len(lat)))]


print(f"commit-to-searchable over {count} single-row commits at {rate:.0f}/s: "
      f"p50 {pct(50):.0f} ms, p95 {pct(95):.0f} ms, p99 {pct(99):.0f} ms, max {lat[-1]:.0f} ms")
