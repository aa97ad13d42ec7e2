"""Reads a Sluice topic with Confluent's own Python consumer and AvroDeserializer, decoding every
key and value through the registry, and prints the table it describes as JSON: the rows left
after applying every change in order, each shaped as tests/common's `expected_docs` shapes SQL
rows, keyed as Sluice keys documents. Every keyed record must sit in the partition the Java
client's partitioner gives its key (kafka-python's copy of it), so any client producing to the
topic keeps a key's changes in one partition. Run by tests/interop.rs and tests/generated.rs.

usage: consume.py BROKERS TOPIC REGISTRY_URL
"""

import base64
import datetime
import decimal
import json
import struct
import sys
import time
import urllib.request
import uuid

from confluent_kafka import Consumer, TopicPartition
from confluent_kafka.schema_registry import SchemaRegistryClient
from confluent_kafka.schema_registry.avro import AvroDeserializer
from confluent_kafka.serialization import MessageField, SerializationContext
from kafka.partitioner.default import murmur2


def field_kinds(registry, subject):
    """Fields whose Avro type alone does not say how the index shows them: BIT(n) columns
    (big-endian bytes, shown as a number) and FLOAT (shown as its shortest decimal), over every
    version of the value schema."""
    get = lambda path: json.load(urllib.request.urlopen(f"{registry}{path}"))
    kinds = {}
    for version in get(f"/subjects/{subject}/versions"):
        schema = json.loads(get(f"/subjects/{subject}/versions/{version}")["schema"])
        before = schema["fields"][0]["type"]
        row = before[1] if isinstance(before, list) else before
        for f in row["fields"]:
            t = f["type"]
            t = t[1] if isinstance(t, list) else t
            if isinstance(t, dict) and t.get("connect.name") == "io.debezium.data.Bits":
                kinds[f["name"]] = "bits"
            elif t == "float" or (isinstance(t, dict) and t.get("type") == "float"):
                kinds[f["name"]] = "float"
    return kinds


def shortest_float(v):
    """The shortest decimal that reads back as the same single-precision number, the nearest
    of those (halfway ties away from zero), as Rust prints an f32."""
    single = struct.unpack("<f", struct.pack("<f", v))[0]
    exact = decimal.Decimal(single)

    def reads_back(d):
        try:
            return struct.unpack("<f", struct.pack("<f", float(d)))[0] == single
        except OverflowError:  # rounded past the largest single
            return False

    for digits in range(1, 10):
        candidates = []
        for rounding in (decimal.ROUND_FLOOR, decimal.ROUND_CEILING):
            d = decimal.Context(prec=digits, rounding=rounding).plus(exact)
            if reads_back(d):
                candidates.append(d)
        if candidates:
            best = min(candidates, key=lambda d: (abs(d - exact), -abs(d)))
            return float(best)
    return single


def canonical(v, kind=None):
    """A decoded Avro value as the index (and `expected_docs`) spells it."""
    if kind == "bits" and isinstance(v, bytes):
        return int.from_bytes(v, "big")
    if kind == "float" and isinstance(v, float):
        return shortest_float(v)
    if isinstance(v, bool) or v is None or isinstance(v, (int, float, str)):
        return v
    if isinstance(v, decimal.Decimal):
        # Scale-0 decimals are numbers where they fit 64 bits, exact text otherwise.
        if v.as_tuple().exponent == 0 and -(2**63) <= v < 2**64:
            return int(v)
        return str(v)
    if isinstance(v, datetime.datetime):
        zoned = v.tzinfo is not None
        if zoned:
            v = v.astimezone(datetime.timezone.utc)
        text = f"{v.year:04d}-{v.month:02d}-{v.day:02d}T{v.hour:02d}:{v.minute:02d}:{v.second:02d}.{v.microsecond:06d}"
        return text + "Z" if zoned else text
    if isinstance(v, datetime.date):
        return f"{v.year:04d}-{v.month:02d}-{v.day:02d}"
    if isinstance(v, bytes):
        return base64.b64encode(v).decode()
    if isinstance(v, dict) and set(v) == {"wkb", "srid"}:
        return {"wkb": base64.b64encode(v["wkb"]).decode(), "srid": v["srid"]}
    raise TypeError(f"unexpected decoded value {v!r}")


def document_id(key, kinds):
    """Sluice's document id: a single string key as it is, any other key as compact JSON
    (several parts as an array)."""
    parts = [canonical(v, kinds.get(k)) for k, v in key.items()]
    if len(parts) == 1 and isinstance(parts[0], str):
        return parts[0]
    single = parts[0] if len(parts) == 1 else parts
    return json.dumps(single, separators=(",", ":"), ensure_ascii=False)


def main():
    brokers, topic, registry = sys.argv[1:4]
    deserialize = AvroDeserializer(SchemaRegistryClient({"url": registry}))
    kinds = field_kinds(registry, f"{topic}-value")
    consumer = Consumer(
        {
            "bootstrap.servers": brokers,
            "group.id": f"interop-{uuid.uuid4()}",
            "auto.offset.reset": "earliest",
            "enable.auto.commit": False,
        }
    )
    metadata = consumer.list_topics(topic, timeout=10)
    partitions = sorted(metadata.topics[topic].partitions)
    ends = {p: consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=10)[1] for p in partitions}
    consumer.assign([TopicPartition(topic, p, 0) for p in partitions])
    rows, ops, records = {}, {}, 0
    done = {p for p in partitions if ends[p] == 0}
    deadline = time.time() + 120
    while len(done) < len(partitions):
        assert time.time() < deadline, f"timed out with partitions {set(partitions) - done} unread"
        msg = consumer.poll(1.0)
        if msg is None:
            continue
        assert msg.error() is None, msg.error()
        records += 1
        if msg.offset() + 1 >= ends[msg.partition()]:
            done.add(msg.partition())
        if msg.key() is not None:
            java = partitions[(murmur2(msg.key()) & 0x7FFFFFFF) % len(partitions)]
            assert msg.partition() == java, (
                f"key {msg.key().hex()} in partition {msg.partition()}, the Java client's is {java}"
            )
        if msg.value() is None:
            ops["tombstone"] = ops.get("tombstone", 0) + 1
            continue
        key = deserialize(msg.key(), SerializationContext(topic, MessageField.KEY))
        value = deserialize(msg.value(), SerializationContext(topic, MessageField.VALUE))
        op = value["op"]
        ops[op] = ops.get(op, 0) + 1
        source = value["source"]
        assert source["connector"] == "mysql" and source["table"] == topic.split(".")[-1], source
        doc_id = document_id(key, kinds)
        if op == "d":
            assert value["after"] is None and value["before"] is not None, value
            rows.pop(doc_id, None)
        else:
            after = {k: canonical(v, kinds.get(k)) for k, v in value["after"].items()}
            for k, v in key.items():
                assert canonical(v, kinds.get(k)) == after[k], (key, after)
            rows[doc_id] = after
    consumer.close()
    print(json.dumps({"records": records, "ops": ops, "rows": rows}))


if __name__ == "__main__":
    main()
