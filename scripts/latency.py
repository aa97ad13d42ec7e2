#!/usr/bin/env python3
"""Latency probes for scripts/latency_bench.sh (figures in docs/benchmarks.md).

    latency.py kafka-hop BROKERS COUNT RATE FETCH_WAIT_MS
        the broker's floor: an idempotent producer (linger 0) and a consumer on a fresh
        one-partition topic; each record's produce -> consume time.
    latency.py fetch-waits BROKERS BROKER_PID WAIT_MS...
        how the broker treats a waiting fetch: for each fetch.wait.max.ms, the produce ->
        consume hop at 100/s, and the CPU this client and the broker spend while one
        consumer of 12 idle partitions waits (10 s).
    latency.py index-write ES_URL COUNT RATE
        the index server's floor: a one-document _bulk with an external version, then a
        realtime GET of it by id; the time until the GET finds it.
    latency.py index-load ES_URL COUNT RATE
        the index server's floor at a load: documents fall due at RATE a second and a loop
        with nothing else in it sends every document due as one _bulk (external versions) as
        soon as the previous bulk is answered; each document's time from falling due until
        its bulk is answered. "slow_bulks" counts bulks that took over 100 ms, "at" gives the
        documents written before each of the first ten.
    latency.py raw-pipeline BROKERS ES_URL COUNT RATE FETCH_WAIT_MS
        the same hops as Sluice without Sluice, at a load: records produced at RATE a second
        (idempotent, linger 0) carrying their send time, consumed by a loop that sends what it
        holds as one _bulk (external versions) as soon as the previous bulk is answered, and
        the commits probe's poller (_mget every 2 ms): produce -> searchable per record.
    latency.py commits MYSQL_ARGS_JSON ES_URL INDEX TABLE FIRST_ID COUNT RATE [BURST EVERY_S]
        single-row autocommit INSERTs into TABLE (id, committed, note) at RATE a second, or,
        with BURST, BURST of them as fast as one client goes every EVERY_S seconds; each row
        carries its commit time (NOW(6), UTC). A poller asks the index (_mget, realtime) every
        2 ms for the rows written and not yet seen: commit -> searchable per row. TABLE
        shop.orders (the demo's) is written with its own columns, `created_at` the time.
    latency.py stages METRICS_URL... -- BEFORE_FILE
        with `--save FILE` stores the stage histograms of every process; without, prints each
        stage's p50/p99 since the saved ones.

Each probe prints one JSON line: {"p50": ms, "p95": ms, "p99": ms, "max": ms, "n": count,
"rate": achieved per second}.
"""
import json
import os
import subprocess
import sys
import threading
import time
import urllib.request
from datetime import datetime, timezone


def summary(lat, took):
    if not lat:
        sys.exit("no latency samples")
    lat = sorted(lat)

    def pct(p):
        return round(lat[min(len(lat) - 1, int(p / 100 * len(lat)))], 2)

    return {"p50": pct(50), "p95": pct(95), "p99": pct(99), "max": round(lat[-1], 2),
            "n": len(lat), "rate": round(len(lat) / took, 1)}


def paced(count, rate):
    """Yields 0..count at `rate` a second (a fixed schedule: a late send does not push the
    next ones back)."""
    t0 = time.monotonic()
    for i in range(count):
        delay = t0 + i / rate - time.monotonic()
        if delay > 0:
            time.sleep(delay)
        yield i


def kafka_hop(brokers, count, rate, fetch_wait):
    from confluent_kafka import Consumer, Producer, TopicPartition
    from confluent_kafka.admin import AdminClient, NewTopic

    topic = f"latency-floor-{time.time_ns()}"
    admin = AdminClient({"bootstrap.servers": brokers})
    admin.create_topics([NewTopic(topic, 1, 1)])[topic].result(30)
    consumer = Consumer({"bootstrap.servers": brokers, "group.id": topic,
                         "enable.auto.commit": False, "fetch.wait.max.ms": fetch_wait})
    consumer.assign([TopicPartition(topic, 0, 0)])
    producer = Producer({"bootstrap.servers": brokers, "enable.idempotence": True,
                         "acks": "all", "linger.ms": 0})
    lat = []

    def consume():
        while len(lat) < count:
            m = consumer.poll(0.1)
            if m is not None and not m.error():
                lat.append((time.time_ns() - int(m.value())) / 1e6)

    reader = threading.Thread(target=consume)
    reader.start()
    # Warm-up: the first fetch and the producer id are not the floor.
    time.sleep(1)
    t0 = time.monotonic()
    for _ in paced(count, rate):
        producer.produce(topic, value=str(time.time_ns()).encode())
        producer.poll(0)
    producer.flush(30)
    reader.join(60)
    if reader.is_alive():
        sys.exit(f"only {len(lat)} of {count} records consumed within 60 s")
    consumer.close()
    return summary(lat, time.monotonic() - t0)


def cpu_ticks(pid):
    fields = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
    return int(fields[11]) + int(fields[12])  # utime + stime


def fetch_waits(brokers, broker_pid, waits):
    from confluent_kafka import Consumer, TopicPartition
    from confluent_kafka.admin import AdminClient, NewTopic

    hz = os.sysconf("SC_CLK_TCK")
    for wait in waits:
        hop = kafka_hop(brokers, 300, 100, wait)
        topic = f"idle-{time.time_ns()}"
        admin = AdminClient({"bootstrap.servers": brokers})
        admin.create_topics([NewTopic(topic, 12, 1)])[topic].result(30)
        consumer = Consumer({"bootstrap.servers": brokers, "group.id": topic,
                             "fetch.wait.max.ms": wait})
        consumer.assign([TopicPartition(topic, p, 0) for p in range(12)])
        stop = threading.Event()

        def consume():
            while not stop.is_set():
                consumer.poll(0.1)

        reader = threading.Thread(target=consume)
        reader.start()
        time.sleep(3)
        mine, broker = cpu_ticks(os.getpid()), cpu_ticks(broker_pid)
        time.sleep(10)
        mine, broker = cpu_ticks(os.getpid()) - mine, cpu_ticks(broker_pid) - broker
        stop.set()
        reader.join()
        consumer.close()
        print(json.dumps({"fetch_wait_ms": wait, "hop": hop,
                          "idle_client_cpu_percent": round(mine / hz / 10 * 100, 2),
                          "idle_broker_cpu_percent": round(broker / hz / 10 * 100, 2)}),
              flush=True)


def http(method, url, body=None, ndjson=False):
    data = None if body is None else body.encode()
    kind = "application/x-ndjson" if ndjson else "application/json"
    req = urllib.request.Request(url, data=data, method=method, headers={"Content-Type": kind})
    try:
        with urllib.request.urlopen(req) as r:
            return r.status, json.load(r)
    except urllib.error.HTTPError as e:
        return e.code, None


def index_write(es, count, rate):
    index = f"latency-floor-{time.time_ns()}"
    http("PUT", f"{es}/{index}")
    lat = []
    t0 = time.monotonic()
    for i in paced(count, rate):
        start = time.time_ns()
        action = {"index": {"_index": index, "_id": str(i), "version": i + 1,
                            "version_type": "external"}}
        doc = {"id": i, "committed": datetime.now(timezone.utc).isoformat(), "note": "floor"}
        http("POST", f"{es}/_bulk", json.dumps(action) + "\n" + json.dumps(doc) + "\n", True)
        while http("GET", f"{es}/{index}/_doc/{i}")[0] != 200:
            pass
        lat.append((time.time_ns() - start) / 1e6)
    took = time.monotonic() - t0
    http("DELETE", f"{es}/{index}")
    return summary(lat, took)


def index_load(es, count, rate):
    index = f"latency-load-{time.time_ns()}"
    http("PUT", f"{es}/{index}")
    lat, slow = [], []
    t0 = time.monotonic()
    sent = 0
    while sent < count:
        due = min(count, int((time.monotonic() - t0) * rate) + 1)
        if due <= sent:
            time.sleep(max(0.0, t0 + sent / rate - time.monotonic()))
            continue
        lines = []
        for i in range(sent, due):
            lines.append(json.dumps({"index": {"_index": index, "_id": str(i), "version": i + 1,
                                               "version_type": "external"}}))
            lines.append(json.dumps({"id": i, "note": "load"}))
        start = time.monotonic()
        http("POST", f"{es}/_bulk", "\n".join(lines) + "\n", True)
        done = time.monotonic()
        if done - start > 0.1:
            slow.append(sent)
        lat.extend((done - (t0 + i / rate)) * 1000 for i in range(sent, due))
        sent = due
    took = time.monotonic() - t0
    http("DELETE", f"{es}/{index}")
    out = summary(lat, took)
    out["slow_bulks"], out["at"] = len(slow), slow[:10]
    return out


def poll_seen(es, index, written, seen, count, done):
    """Until `done`: asks the index every 2 ms (_mget, realtime) for the ids written and not
    yet seen; a document found became visible during the request (its midpoint). `seen` maps
    id -> ms from its `committed` (or `created_at`) time; sets `done` once `count` are seen."""
    while not done.is_set():
        pending = [i for i in written[:] if i not in seen][:2000]
        if pending:
            body = json.dumps({"ids": [str(i) for i in pending]})
            asked = time.time()
            status, r = http("POST", f"{es}/{index}/_mget", body)
            now = (asked + time.time()) / 2
            for d in (r or {}).get("docs", []):
                if d.get("found"):
                    src = d["_source"]
                    t = src.get("committed") or src["created_at"]
                    c = datetime.fromisoformat(t).replace(tzinfo=timezone.utc)
                    seen.setdefault(src["id"], (now - c.timestamp()) * 1000)
        if len(seen) >= count:
            done.set()
        time.sleep(0.002)


def raw_pipeline(brokers, es, count, rate, fetch_wait):
    from confluent_kafka import Consumer, Producer, TopicPartition
    from confluent_kafka.admin import AdminClient, NewTopic

    topic = index = f"latency-raw-{time.time_ns()}"
    admin = AdminClient({"bootstrap.servers": brokers})
    admin.create_topics([NewTopic(topic, 1, 1)])[topic].result(30)
    http("PUT", f"{es}/{index}")
    consumer = Consumer({"bootstrap.servers": brokers, "group.id": topic,
                         "enable.auto.commit": False, "fetch.wait.max.ms": fetch_wait})
    consumer.assign([TopicPartition(topic, 0, 0)])
    producer = Producer({"bootstrap.servers": brokers, "enable.idempotence": True,
                         "acks": "all", "linger.ms": 0})
    written, seen, done = [], {}, threading.Event()

    def load():
        while not done.is_set():
            batch = consumer.consume(num_messages=1000, timeout=0.1)
            lines = []
            for m in batch:
                if m.error():
                    continue
                doc = json.loads(m.value())
                lines.append(json.dumps({"index": {"_index": index, "_id": str(doc["id"]),
                                                   "version": m.offset() + 1,
                                                   "version_type": "external"}}))
                lines.append(json.dumps(doc))
            if lines:
                http("POST", f"{es}/_bulk", "\n".join(lines) + "\n", True)

    loader = threading.Thread(target=load)
    poller = threading.Thread(target=poll_seen, args=(es, index, written, seen, count, done))
    loader.start()
    poller.start()
    time.sleep(1)  # the consumer's first fetch is not the floor
    t0 = time.monotonic()
    for i in paced(count, rate):
        doc = {"id": i, "committed": datetime.now(timezone.utc).isoformat(), "note": "raw"}
        producer.produce(topic, value=json.dumps(doc).encode())
        producer.poll(0)
        written.append(i)
    producer.flush(30)
    took = time.monotonic() - t0
    done.wait(timeout=180)
    done.set()
    loader.join()
    poller.join()
    consumer.close()
    http("DELETE", f"{es}/{index}")
    if len(seen) < count:
        sys.exit(f"only {len(seen)} of {count} records became searchable within 180 s")
    out = summary(list(seen.values()), took)
    out["rate"] = round(count / took, 1)
    return out


def commits(mysql_args, es, index, table, first, count, rate, burst=0, every=0.0):
    written = []  # ids whose INSERT was sent, in order
    seen = {}  # id -> commit -> searchable, ms
    done = threading.Event()

    client = subprocess.Popen(mysql_args, stdin=subprocess.PIPE, stdout=subprocess.DEVNULL,
                              text=True)
    poller = threading.Thread(target=poll_seen, args=(es, index, written, seen, count, done))
    poller.start()
    client.stdin.write("SET time_zone = '+00:00';\n")
    t0 = time.monotonic()
    if burst:
        count = count // burst * burst
        schedule = (i for b in paced(count // burst, 1 / every) for i in range(b * burst, (b + 1) * burst))
    else:
        schedule = paced(count, rate)
    for i in schedule:
        if table == "shop.orders":
            client.stdin.write(
                "INSERT INTO shop.orders (id, customer_id, status, total, quantity, note, "
                f"ordered_on, created_at) VALUES ({first + i}, 1, 'latency', 1.00, 1, "
                f"'probe {i}', CURRENT_DATE, NOW(6));\n")
        else:
            client.stdin.write(f"INSERT INTO {table} (id, committed, note) "
                               f"VALUES ({first + i}, NOW(6), 'probe {i}');\n")
        client.stdin.flush()
        written.append(first + i)
    client.stdin.close()
    client.wait()
    took = time.monotonic() - t0
    done.wait(timeout=180)
    done.set()
    poller.join()
    if len(seen) < count:
        sys.exit(f"only {len(seen)} of {count} rows became searchable within 180 s")
    out = summary(list(seen.values()), took)
    out["rate"] = round(count / took, 1)  # offered, as achieved by the client
    return out


def scrape(urls):
    """Per stage, the cumulative bucket counts summed over the processes."""
    stages = {}
    for url in urls:
        with urllib.request.urlopen(url) as r:
            text = r.read().decode()
        for line in text.splitlines():
            if not line.startswith("sluice_stage_seconds_bucket{"):
                continue
            labels, value = line.rsplit(" ", 1)
            stage = labels.split('stage="')[1].split('"')[0]
            le = labels.split('le="')[1].split('"')[0]
            bucket = stages.setdefault(stage, {})
            bucket[le] = bucket.get(le, 0) + float(value)
    return stages


def quantile(buckets, q):
    """Linear interpolation inside the bucket holding the q-th record (Prometheus's way)."""
    bounds = sorted((float(le), n) for le, n in buckets.items())
    total = bounds[-1][1]
    if total <= 0:
        return None
    rank, lower, below = q * total, 0.0, 0.0
    for upper, n in bounds:
        if n >= rank:
            if upper == float("inf"):
                return lower * 1000
            return (lower + (upper - lower) * (rank - below) / max(n - below, 1e-9)) * 1000
        lower, below = upper, n
    return None


def stages(urls, saved):
    before = json.load(open(saved))
    after = scrape(urls)
    out = {}
    for stage, buckets in after.items():
        delta = {le: n - before.get(stage, {}).get(le, 0) for le, n in buckets.items()}
        n = delta.get("+Inf", 0)
        if n > 0:
            out[stage] = {"p50": round(quantile(delta, 0.5), 2),
                          "p99": round(quantile(delta, 0.99), 2), "n": int(n)}
    return out


def main(argv):
    cmd, args = argv[0], argv[1:]
    if cmd == "kafka-hop":
        out = kafka_hop(args[0], int(args[1]), float(args[2]), int(args[3]))
    elif cmd == "fetch-waits":
        fetch_waits(args[0], int(args[1]), [int(w) for w in args[2:]])
        return
    elif cmd == "index-write":
        out = index_write(args[0], int(args[1]), float(args[2]))
    elif cmd == "index-load":
        out = index_load(args[0], int(args[1]), float(args[2]))
    elif cmd == "raw-pipeline":
        out = raw_pipeline(args[0], args[1], int(args[2]), float(args[3]), int(args[4]))
    elif cmd == "commits":
        extra = (int(args[7]), float(args[8])) if len(args) > 8 else ()
        out = commits(json.loads(args[0]), args[1], args[2], args[3], int(args[4]),
                      int(args[5]), float(args[6]), *extra)
    elif cmd == "stages":
        split = args.index("--")
        urls, rest = args[:split], args[split + 1:]
        if rest[0] == "--save":
            json.dump(scrape(urls), open(rest[1], "w"))
            return
        out = stages(urls, rest[0])
    else:
        sys.exit(__doc__)
    print(json.dumps(out))


if __name__ == "__main__":
    main(sys.argv[1:])
