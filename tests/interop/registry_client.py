"""Confluent's own Python client (confluent-kafka's SchemaRegistryClient, AvroSerializer,
AvroDeserializer) against `sluice registry`: register, look up, evolve, check compatibility,
reference, delete. Run by tests/interop.rs; exits non-zero with the failed check.

usage: registry_client.py URL [USER:PASSWORD]
"""

import json
import sys

from confluent_kafka.schema_registry import (
    Schema,
    SchemaReference,
    SchemaRegistryClient,
    SchemaRegistryError,
)
from confluent_kafka.schema_registry.avro import AvroDeserializer, AvroSerializer
from confluent_kafka.serialization import MessageField, SerializationContext


def avro(fields, name="Order", namespace="shop"):
    return Schema(
        json.dumps({"type": "record", "name": name, "namespace": namespace, "fields": fields}),
        "AVRO",
    )


def expect_error(code, call):
    """Runs `call`, which must fail with the registry error `code` (Confluent's code)."""
    try:
        call()
    except SchemaRegistryError as e:
        assert e.error_code == code, f"expected {code}, got {e.error_code}: {e}"
        return e
    raise AssertionError(f"expected error {code}, the call succeeded")


def main():
    conf = {"url": sys.argv[1]}
    if len(sys.argv) > 2:
        conf["basic.auth.user.info"] = sys.argv[2]
    client = SchemaRegistryClient(conf)
    subject = "orders-value"

    v1 = avro([{"name": "id", "type": "long"}, {"name": "total", "type": "string"}])
    id1 = client.register_schema(subject, v1)
    assert client.register_schema(subject, v1) == id1, "registering again is idempotent"
    assert subject in client.get_subjects()
    fetched = client.get_schema(id1)
    assert json.loads(fetched.schema_str) == json.loads(v1.schema_str)
    found = client.lookup_schema(subject, v1)
    assert (found.schema_id, found.version) == (id1, 1), found

    # Evolution under the default level (BACKWARD): a nullable column with a default passes.
    v2 = avro(
        [
            {"name": "id", "type": "long"},
            {"name": "total", "type": "string"},
            {"name": "note", "type": ["null", "string"], "default": None},
        ]
    )
    assert client.test_compatibility(subject, v2) is True
    id2 = client.register_schema(subject, v2)
    latest = client.get_latest_version(subject)
    assert (latest.version, latest.schema_id) == (2, id2), latest
    assert client.get_versions(subject) == [1, 2]
    assert client.get_version(subject, 1).schema_id == id1

    # A column without a default is refused, with the level named.
    v3 = avro(
        [
            {"name": "id", "type": "long"},
            {"name": "total", "type": "string"},
            {"name": "note", "type": ["null", "string"], "default": None},
            {"name": "region", "type": "string"},
        ]
    )
    assert client.test_compatibility(subject, v3) is False
    e = expect_error(409, lambda: client.register_schema(subject, v3))
    assert "BACKWARD" in str(e), e
    # ... until the subject's level allows it.
    assert client.set_compatibility(subject, "FORWARD") == {"compatibility": "FORWARD"}
    assert client.get_compatibility(subject) == "FORWARD"
    assert client.test_compatibility(subject, v3) is True
    id3 = client.register_schema(subject, v3)
    assert client.get_versions(subject) == [1, 2, 3]
    assert client.set_compatibility(level="FULL") == {"compatibility": "FULL"}
    assert client.get_compatibility() == "FULL"
    expect_error(42203, lambda: client.set_compatibility(subject, "SIDEWAYS"))

    # Serializer and deserializer round trip, schema looked up by the serializer.
    ser = AvroSerializer(client, v3.schema_str, conf={"auto.register.schemas": False, "use.latest.version": False})
    de = AvroDeserializer(client)
    ctx = SerializationContext("orders", MessageField.VALUE)
    record = {"id": 7, "total": "12.50", "note": None, "region": "eu"}
    data = ser(record, ctx)
    assert data[0] == 0 and int.from_bytes(data[1:5], "big") == id3
    assert de(data, ctx) == record

    # References: a type defined under another subject.
    money = avro([{"name": "cents", "type": "long"}], name="Money", namespace="m")
    client.register_schema("money-value", money)
    with_ref = Schema(
        json.dumps(
            {"type": "record", "name": "Invoice", "namespace": "shop", "fields": [{"name": "amount", "type": "m.Money"}]}
        ),
        "AVRO",
        references=[SchemaReference("m.Money", "money-value", 1)],
    )
    ref_id = client.register_schema("invoice-value", with_ref)
    got = client.get_schema(ref_id)
    assert [(r.name, r.subject, r.version) for r in got.references] == [("m.Money", "money-value", 1)]
    expect_error(42206, lambda: client.delete_subject("money-value"))

    # Deletes: soft, then permanent.
    assert client.delete_version(subject, 3) == 3
    assert client.get_versions(subject) == [1, 2]
    expect_error(40402, lambda: client.get_version(subject, 3))
    assert client.delete_subject(subject) == [1, 2]
    assert subject not in client.get_subjects()
    assert client.delete_subject(subject, permanent=True) == [1, 2, 3]
    expect_error(40401, lambda: client.get_versions(subject))
    print("registry client: all checks passed")


if __name__ == "__main__":
    main()
