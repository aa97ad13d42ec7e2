//! Registry subject names of a topic's key and value schemas.

use serde::Deserialize;

/// Confluent's subject name strategies.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SubjectStrategy {
    /// `<topic>-key`, `<topic>-value` (TopicNameStrategy).
    #[default]
    Topic,
    /// The record's full name (RecordNameStrategy).
    Record,
    /// `<topic>-<record full name>` (TopicRecordNameStrategy).
    TopicRecord,
}

/// Which of a topic's two schemas a subject holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Part {
    /// The record key's schema.
    Key,
    /// The record value's schema.
    Value,
}

impl Part {
    fn name(self) -> &'static str {
        match self {
            Part::Key => "key",
            Part::Value => "value",
        }
    }
}

/// The subject of `topic`'s key or value `schema` (an Avro record) under `strategy`.
pub fn subject(
    strategy: SubjectStrategy,
    topic: &str,
    part: Part,
    schema: &serde_json::Value,
) -> String {
    let record = format!(
        "{}.{}",
        schema["namespace"].as_str().unwrap_or_default(),
        schema["name"].as_str().unwrap_or_default()
    );
    match strategy {
        SubjectStrategy::Topic => format!("{topic}-{}", part.name()),
        SubjectStrategy::Record => record,
        SubjectStrategy::TopicRecord => format!("{topic}-{record}"),
    }
}
