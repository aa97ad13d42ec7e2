//! What a record's value is: Debezium's envelope (`proto/envelope.avsc`, `proto/source.avsc`)
//! instantiated per table, in Confluent's wire format. The encoder writes it; the loader
//! reads the fields named here.

/// The `source` block, as published in `proto/source.avsc`.
pub const SOURCE_AVSC: &str = include_str!("../../proto/source.avsc");

/// The envelope every value schema instantiates, as published in `proto/envelope.avsc`.
pub const ENVELOPE_AVSC: &str = include_str!("../../proto/envelope.avsc");

/// Envelope fields the loader reads.
pub mod field {
    /// The row before the change.
    pub const BEFORE: &str = "before";
    /// The row after the change.
    pub const AFTER: &str = "after";
    /// The `source` block.
    pub const SOURCE: &str = "source";
    /// Debezium's one-letter operation code.
    pub const OP: &str = "op";
    /// When Sluice read the change, milliseconds since the epoch.
    pub const TS_MS: &str = "ts_ms";
}

/// `source` block fields the loader reads.
pub mod source_field {
    /// The change's version (binlog order), a positive long.
    pub const CHANGE_VERSION: &str = "change_version";
    /// The database.
    pub const DB: &str = "db";
    /// The table (nullable in Debezium's schema; always set by Sluice).
    pub const TABLE: &str = "table";
    /// Event time, milliseconds since the epoch.
    pub const TS_MS: &str = "ts_ms";
}

/// Field property naming the column's MySQL type family, e.g. `BIGINT UNSIGNED`: consumers
/// (the loader's index mapping among them) tell BIGINT UNSIGNED from DECIMAL(20,0) by it,
/// which share an Avro type.
pub const MYSQL_TYPE: &str = "mysql.type";

/// The MySQL type a field of a Sluice row schema records (empty for other schemas).
pub fn mysql_type(field: &apache_avro::schema::RecordField) -> &str {
    field
        .custom_attributes
        .get(MYSQL_TYPE)
        .and_then(|t| t.as_str())
        .unwrap_or("")
}

/// Whether a MySQL type is BIT(n) with n > 1: Avro bytes that spell an unsigned number.
pub fn is_bits(mysql_type: &str) -> bool {
    mysql_type.starts_with("BIT(")
}

/// Starts `out` afresh with Confluent's wire-format header: magic byte 0 and the big-endian
/// schema id.
pub fn frame(out: &mut Vec<u8>, id: u32) {
    out.clear();
    out.push(0);
    out.extend_from_slice(&id.to_be_bytes());
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(avsc: &str) -> Vec<String> {
        let schema: serde_json::Value = serde_json::from_str(avsc).unwrap();
        schema["fields"]
            .as_array()
            .unwrap()
            .iter()
            .map(|f| f["name"].as_str().unwrap().to_string())
            .collect()
    }

    #[test]
    fn the_names_the_loader_reads_are_in_the_published_schemas() {
        let envelope = names(ENVELOPE_AVSC);
        for f in [
            field::BEFORE,
            field::AFTER,
            field::SOURCE,
            field::OP,
            field::TS_MS,
        ] {
            assert!(envelope.iter().any(|n| n == f), "{f}");
        }
        let source = names(SOURCE_AVSC);
        for f in [
            source_field::CHANGE_VERSION,
            source_field::DB,
            source_field::TABLE,
            source_field::TS_MS,
        ] {
            assert!(source.iter().any(|n| n == f), "{f}");
        }
    }
}
