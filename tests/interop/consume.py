"""Reads a Sluice topic with Confluent's own Python consumer and AvroDeserializer, decoding every
key and value through the registry, and prints the table it describes as JSON: the rows left
after applying every change in order, each shaped as tests/common's `expected_docs` shapes SQL
rows. Run by tests/interop.rs.

usage: consume.py BROKERS TOPIC REGISTRY_URL
"""

import base64
import datetime
import decimal
import json
import sys
import time
import uuid

from confluent_kafka import Consumer, TopicPartition
from confluent_kafka.schema_registry import SchemaRegistryClient
from confluent_kafka.schema_registry.avro import AvroDeserializer
from confluent_kafka.serialization import MessageField, SerializationContext


def canonical(v):
    """A decoded Avro value as the index (and `expected_docs`) spells it."""
    if isinstance(v, bool) or v is None or isinstance(v, (int, float, str)):
        return v
    if isinstance(v, decimal.Decimal):
        # Scale-0 decimals are numbers where they fit 64 bits, exact text otherwise.
        if v.as_tuple().exponent == 0 and -(2**63) <= v < 2**64:
            return int(v)
        return str(v)
    if isinstance(v, datetime.datetime):
        if v.tzinfo is not None:
            return v.astimezone(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
        return v.strftime("%Y-%m-%dT%H:%M:%S.%f")
    if isinstance(v, datetime.date):
        return v.isoformat()
    if isinstance(v, bytes):
        return base64.b64encode(v).decode()
    raise TypeError(f"unexpected decoded value {v!r}")


def main():
    brokers, topic, registry = sys.argv[1:4]
    deserialize = AvroDeserializer(SchemaRegistryClient({"url": registry}))
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
    deadline = time.time() + 60
    while len(done) < len(partitions):
        assert time.time() < deadline, f"timed out with partitions {set(partitions) - done} unread"
        msg = consumer.poll(1.0)
        if msg is None:
            continue
        assert msg.error() is None, msg.error()
        records += 1
        if msg.offset() + 1 >= ends[msg.partition()]:
            done.add(msg.partition())
        if msg.value() is None:
            ops["tombstone"] = ops.get("tombstone", 0) + 1
            continue
        key = deserialize(msg.key(), SerializationContext(topic, MessageField.KEY))
        value = deserialize(msg.value(), SerializationContext(topic, MessageField.VALUE))
        op = value["op"]
        ops[op] = ops.get(op, 0) + 1
        source = value["source"]
        assert source["connector"] == "mysql" and source["table"] == topic.split(".")[-1], source
        (key_value,) = key.values()
        doc_id = key_value if isinstance(key_value, str) else json.dumps(canonical(key_value))
        if op == "d":
            assert value["after"] is None and value["before"] is not None, value
            rows.pop(doc_id, None)
        else:
            after = {k: canonical(v) for k, v in value["after"].items()}
            assert canonical(key_value) == after[list(key)[0]], (key, after)
            rows[doc_id] = after
    consumer.close()
    print(json.dumps({"records": records, "ops": ops, "rows": rows}))


if __name__ == "__main__":
    main()
