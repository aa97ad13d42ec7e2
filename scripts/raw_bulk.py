#!/usr/bin/env python3
"""Reference rate of the index server alone: a raw bulk client writing `orders`-shaped
documents (external versions, 1,000 per request, one client) into a scratch index with the
mapping Sluice gave `shop.orders`. Run after scripts/demo.sh; docs/benchmarks.md sets the
loader's rate beside this one.

    python3 scripts/raw_bulk.py [ES_URL] [DOCS]
"""
import json
import sys
import time
import urllib.request

url = sys.argv[1] if len(sys.argv) > 1 else "http://127.0.0.1:19200"
total = int(sys.argv[2]) if len(sys.argv) > 2 else 21000
index = f"raw_bulk_{int(time.time())}"


def call(method, path, body=None, ctype="application/json"):
    req = urllib.request.Request(url + path, data=body, method=method, headers={"Content-Type": ctype})
    with urllib.request.urlopen(req) as r:
        return json.load(r)


mappings = call("GET", "/shop.orders/_mapping")["shop.orders"]["mappings"]
call("PUT", f"/{index}", json.dumps({"mappings": mappings}).encode())
start = time.time()
for base in range(0, total, 1000):
    lines = []
    for i in range(base, min(base + 1000, total)):
        lines.append(json.dumps({"index": {"_index": index, "_id": str(i), "version": i + 1, "version_type": "external"}}))
        lines.append(json.dumps({
            "id": i, "customer_id": 1 + i % 1000, "status": "paid", "total": "123.45", "quantity": 3,
            "note": f"order {i} – gift wrap ✓", "ordered_on": "2024-03-01",
            "created_at": "2024-01-01T00:00:05.000185", "updated_at": "2026-11-27T10:39:23.916875Z",
        }, ensure_ascii=False))
    r = call("POST", "/_bulk", ("\n".join(lines) + "\n").encode(), "application/x-ndjson")
    assert not r.get("errors"), r
elapsed = time.time() - start
call("DELETE", f"/{index}")
print(f"raw bulk: {total} docs in {elapsed:.2f} s = {total / elapsed:.0f} docs/s")
