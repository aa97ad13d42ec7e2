//! Kafka topic names: one topic per table, `<prefix>.<db>.<table>`.

use crate::model::TableId;

/// The topic of `table`.
pub fn table_topic(prefix: &str, table: &TableId) -> String {
    format!("{prefix}.{}.{}", table.db, table.table)
}

/// The loader's dead-letter topic unless configured: `<prefix>.dlq`.
pub fn default_dead_letter(prefix: &str) -> String {
    format!("{prefix}.dlq")
}

/// A regular expression (librdkafka's `^` form) matching the topics of every table whose
/// database matches `db_glob` and name matches `table_glob` (`*`, `?` as in `tables`), so
/// topics a source creates later join a running subscription.
pub fn subscription(prefix: &str, db_glob: &str, table_glob: &str) -> String {
    format!(
        "^{}\\.{}\\.{}$",
        regex_literal(prefix),
        glob_regex(db_glob),
        glob_regex(table_glob)
    )
}

/// Whether Kafka accepts `name` as a topic name.
pub fn is_valid(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 249
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
}

/// `s` with regular-expression metacharacters escaped.
fn regex_literal(s: &str) -> String {
    s.chars()
        .flat_map(|c| {
            let escape = "\\.+*?()|[]{}^$".contains(c);
            escape.then_some('\\').into_iter().chain([c])
        })
        .collect()
}

/// A table-name glob as a regular expression over one topic-name part.
fn glob_regex(glob: &str) -> String {
    glob.split('*')
        .map(|run| {
            run.split('?')
                .map(regex_literal)
                .collect::<Vec<_>>()
                .join("[^.]")
        })
        .collect::<Vec<_>>()
        .join("[^.]*")
}
