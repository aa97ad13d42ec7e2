//! Whether a document in the index is the one a row must have.

use serde_json::Value as Json;

use crate::load::document::META_FIELD;

/// The columns in which `actual` differs from `expected`, by name (then columns only the
/// actual one has). Sluice's own metadata is not compared; a float
/// counts as equal within a few units of its last place, the precision a double carries
/// through a server that reparses it.
pub fn differing_columns(expected: &Json, actual: &Json) -> Vec<String> {
    let (Json::Object(e), Json::Object(a)) = (expected, actual) else {
        return if same(expected, actual) {
            Vec::new()
        } else {
            vec!["(whole document)".into()]
        };
    };
    let mut columns: Vec<String> = e
        .iter()
        .filter(|(k, v)| *k != META_FIELD && !a.get(*k).is_some_and(|x| same(v, x)))
        .map(|(k, _)| k.clone())
        .collect();
    columns.extend(
        a.keys()
            .filter(|k| *k != META_FIELD && !e.contains_key(*k))
            .cloned(),
    );
    columns
}

fn same(e: &Json, a: &Json) -> bool {
    match (e, a) {
        (Json::Number(x), Json::Number(y)) => {
            if x == y {
                return true;
            }
            let integer = |n: &serde_json::Number| n.is_i64() || n.is_u64();
            if integer(x) && integer(y) {
                return false;
            }
            match (x.as_f64(), y.as_f64()) {
                (Some(x), Some(y)) => close(x, y),
                _ => false,
            }
        }
        (Json::Array(x), Json::Array(y)) => {
            x.len() == y.len() && x.iter().zip(y).all(|(x, y)| same(x, y))
        }
        (Json::Object(x), Json::Object(y)) => {
            x.len() == y.len() && x.iter().all(|(k, v)| y.get(k).is_some_and(|w| same(v, w)))
        }
        _ => e == a,
    }
}

/// Within 4 units in the last place of a double.
fn close(x: f64, y: f64) -> bool {
    x == y || (x - y).abs() <= 4.0 * f64::EPSILON * x.abs().max(y.abs())
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn equal_documents_have_no_differing_column() {
        let doc = json!({"id": 1, "name": "a", "tags": {"x": [1, 2]}, "f": 0.1});
        assert!(differing_columns(&doc, &doc.clone()).is_empty());
    }

    #[test]
    fn names_changed_missing_and_unexpected_columns() {
        let expected = json!({"id": 1, "name": "a", "gone": null, "qty": 2});
        let actual = json!({"id": 1, "name": "b", "qty": 2, "extra": true, "_sluice": {}});
        assert_eq!(
            differing_columns(&expected, &actual),
            ["gone", "name", "extra"]
        );
    }

    #[test]
    fn doubles_agree_within_their_precision_and_integers_exactly() {
        let a = json!({"d": 0.30000000000000004, "i": 9007199254740993u64});
        let b = json!({"d": 0.3, "i": 9007199254740992u64});
        assert_eq!(differing_columns(&a, &b), ["i"]);
        assert_eq!(
            differing_columns(&json!({"d": 1.0}), &json!({"d": 1.5})),
            ["d"]
        );
    }
}
