#!/usr/bin/env python3
"""Reference rate of the index server alone: a raw bulk client writing documents (external
versions, 1,000 per request, one client, nothing else running) into a scratch index with the
mapping and settings of a Sluice index. docs/benchmarks.md sets the loader's rate beside this
one.

    python3 scripts/raw_bulk.py [ES_URL] [DOCS] [FROM_INDEX]

Without FROM_INDEX (after scripts/demo.sh): DOCS synthetic `orders`-shaped documents with
the mapping of `shop.orders`. With FROM_INDEX (scripts/loader_bench.sh): the documents the
loader wrote into FROM_INDEX, read back by `id` range before the timing starts, each with the
`_sluice.version` the loader indexed, so both clients write the same documents.
"""
import json
import sys
import time
import urllib.request

url = sys.argv[1] if len(sys.argv) > 1 else "http://127.0.0.1:19200"
total = int(sys.argv[2]) if len(sys.argv) > 2 else 21000
source = sys.argv[3] if len(sys.argv) > 3 else "shop.orders"
index = f"raw_bulk_{int(time.time())}"


def call(method, path, body=None, ctype="application/json"):
    req = urllib.request.Request(url + path, data=body, method=method, headers={"Content-Type": ctype})
    with urllib.request.urlopen(req) as r:
        return json.load(r)


def synthetic(i):
    return {
        "id": i, "customer_id": 1 + i % 1000, "status": "paid", "total": "123.45", "quantity": 3,
        "note": f"order {i} – gift wrap ✓", "ordered_on": "2024-03-01",
        "created_at": "2024-01-01T00:00:05.000185", "updated_at": "2026-11-27T10:39:23.916875Z",
    }


def read_back():
    """(id, version, document) of every document of `source`, by id range."""
    docs, low, step = [], 0, 5000
    while len(docs) < total:
        query = {"query": {"range": {"id": {"gte": low, "lt": low + step}}}, "size": step,
                 "version": True}
        hits = call("POST", f"/{source}/_search", json.dumps(query).encode())["hits"]["hits"]
        docs += [(h["_id"], h["_version"], h["_source"]) for h in hits]
        low += step
        if low > 100 * total:
            sys.exit(f"raw_bulk: {source} holds fewer than {total} documents")
    return docs[:total]


settings = call("GET", f"/{source}/_settings")[source]["settings"]["index"]
mappings = call("GET", f"/{source}/_mapping")[source]["mappings"]
create = {"mappings": mappings}
if "gc_deletes" in settings:
    create["settings"] = {"index": {"gc_deletes": settings["gc_deletes"]}}
if len(sys.argv) > 3:
    documents = read_back()
else:
    documents = [(str(i), i + 1, synthetic(i)) for i in range(total)]
call("PUT", f"/{index}", json.dumps(create).encode())
start = time.time()
for base in range(0, total, 1000):
    lines = []
    for doc_id, version, doc in documents[base:base + 1000]:
        doc = {"_sluice": {"version": version}, **doc}
        lines.append(json.dumps({"index": {"_index": index, "_id": doc_id, "version": version, "version_type": "external"}}))
        lines.append(json.dumps(doc, ensure_ascii=False))
    r = call("POST", "/_bulk", ("\n".join(lines) + "\n").encode(), "application/x-ndjson")
    assert not r.get("errors"), r
elapsed = time.time() - start
call("DELETE", f"/{index}")
print(f"raw bulk: {total} docs in {elapsed:.2f} s = {total / elapsed:.0f} docs/s")
