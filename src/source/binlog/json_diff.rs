//! MySQL's partial JSON updates (`binlog_row_value_options=PARTIAL_JSON`): an update's after
//! image may hold, instead of a JSON column's new document, the changes that turn the before
//! image's document into it. With `binlog_row_image=FULL` the before image holds the whole old
//! document, so Sluice applies the changes and emits the whole new one.
//!
//! The changes (MySQL's `Json_diff_vector`, sql/json_diff.h): one after another until the
//! column's length is used up, each an operation byte (0 replace, 1 insert, 2 remove), a
//! length-encoded path in MySQL's path syntax (`$.a[1]."b c"`), and, unless removing, a
//! length-encoded binary JSON value. Replace changes an existing value (`JSON_REPLACE`);
//! insert adds an object member that does not exist yet or puts an array element at the
//! path's position, moving the rest up (`JSON_ARRAY_INSERT`); remove deletes a member or an
//! element. MySQL keeps object members ordered by key length, then bytes, and prints JSON as
//! Sluice's decoder does, so the text emitted is the text the new document has.

use super::cursor::{Cursor, DecodeError};
use super::json;

/// A JSON document; scalars keep the text the decoder printed for them.
#[derive(Debug, Clone, PartialEq)]
enum Doc {
    Scalar(String),
    Array(Vec<Doc>),
    /// Members in MySQL's order: by key length, then key bytes.
    Object(Vec<(String, Doc)>),
}

fn bad(what: impl Into<String>) -> DecodeError {
    DecodeError::Invalid(format!("partial JSON update: {}", what.into()))
}

/// The whole new document: `before` (JSON text) with the changes `diffs` applied.
pub fn apply(before: &str, diffs: &[u8]) -> Result<String, DecodeError> {
    let mut doc = parse(&mut before.as_bytes())?;
    let mut c = Cursor::new(diffs);
    while !c.is_empty() {
        let op = c.u8("diff operation")?;
        let path = c.lenenc_bytes("diff path")?;
        let path = std::str::from_utf8(path).map_err(|_| bad("a path that is not UTF-8"))?;
        let legs = parse_path(path)?;
        let value = match op {
            0 | 1 => {
                let text = json::to_text(c.lenenc_bytes("diff value")?)?;
                Some(parse(&mut text.as_bytes())?)
            }
            2 => None,
            other => return Err(bad(format!("operation {other}"))),
        };
        let Some((last, parents)) = legs.split_last() else {
            return Err(bad("a change of the whole document"));
        };
        let parent = seek(&mut doc, parents).ok_or_else(|| bad(format!("no value at {path}")))?;
        let missing = || bad(format!("no value at {path}"));
        match (op, parent, last) {
            (0, Doc::Object(members), Leg::Member(k)) => {
                let slot = members
                    .iter_mut()
                    .find(|(m, _)| m == k)
                    .ok_or_else(missing)?;
                slot.1 = value.expect("replace has a value");
            }
            (0, Doc::Array(items), Leg::Index(i)) => {
                let i = i
                    .resolve(items.len())
                    .filter(|&i| i < items.len())
                    .ok_or_else(missing)?;
                items[i] = value.expect("replace has a value");
            }
            (1, Doc::Object(members), Leg::Member(k)) => {
                if members.iter().any(|(m, _)| m == k) {
                    return Err(bad(format!("{path} exists already")));
                }
                let at = members
                    .iter()
                    .position(|(m, _)| (m.len(), m.as_bytes()) > (k.len(), k.as_bytes()))
                    .unwrap_or(members.len());
                members.insert(at, (k.clone(), value.expect("insert has a value")));
            }
            (1, Doc::Array(items), Leg::Index(i)) => {
                let i = i.resolve(items.len()).unwrap_or(0).min(items.len());
                items.insert(i, value.expect("insert has a value"));
            }
            (2, Doc::Object(members), Leg::Member(k)) => {
                let i = members
                    .iter()
                    .position(|(m, _)| m == k)
                    .ok_or_else(missing)?;
                members.remove(i);
            }
            (2, Doc::Array(items), Leg::Index(i)) => {
                let i = i
                    .resolve(items.len())
                    .filter(|&i| i < items.len())
                    .ok_or_else(missing)?;
                items.remove(i);
            }
            _ => return Err(bad(format!("{path} does not fit the document"))),
        }
    }
    let mut out = String::with_capacity(before.len() + diffs.len());
    print(&doc, &mut out);
    Ok(out)
}

/// One step of a path.
#[derive(Debug, Clone, PartialEq)]
enum Leg {
    Member(String),
    Index(Index),
}

/// An array position: from the start, or `last` minus some.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Index {
    From(usize),
    FromLast(usize),
}

impl Index {
    fn resolve(self, len: usize) -> Option<usize> {
        match self {
            Index::From(i) => Some(i),
            Index::FromLast(back) => len.checked_sub(1)?.checked_sub(back),
        }
    }
}

/// Parses `$`, then `.member`, `."quoted member"` and `[n]`, `[last]`, `[last-n]` legs.
fn parse_path(path: &str) -> Result<Vec<Leg>, DecodeError> {
    let wrong = || bad(format!("path {path:?}"));
    let mut rest = path
        .trim()
        .strip_prefix('$')
        .ok_or_else(wrong)?
        .trim_start();
    let mut legs = Vec::new();
    while !rest.is_empty() {
        if let Some(r) = rest.strip_prefix('.') {
            let r = r.trim_start();
            if r.starts_with('"') {
                let (key, used) = quoted(r).ok_or_else(wrong)?;
                legs.push(Leg::Member(key));
                rest = &r[used..];
            } else {
                let end = r.find(['.', '[', ' ']).unwrap_or(r.len());
                legs.push(Leg::Member(r[..end].to_string()));
                rest = &r[end..];
            }
        } else if let Some(r) = rest.strip_prefix('[') {
            let end = r.find(']').ok_or_else(wrong)?;
            let inner: String = r[..end].chars().filter(|c| !c.is_whitespace()).collect();
            let index = match inner.strip_prefix("last") {
                Some("") => Index::FromLast(0),
                Some(back) => Index::FromLast(
                    back.strip_prefix('-')
                        .and_then(|n| n.parse().ok())
                        .ok_or_else(wrong)?,
                ),
                None => Index::From(inner.parse().map_err(|_| wrong())?),
            };
            legs.push(Leg::Index(index));
            rest = &r[end + 1..];
        } else {
            return Err(wrong());
        }
        rest = rest.trim_start();
    }
    Ok(legs)
}

/// A double-quoted JSON string at the start of `s`: its text and the bytes it took.
fn quoted(s: &str) -> Option<(String, usize)> {
    let mut end = 1;
    let bytes = s.as_bytes();
    while end < bytes.len() {
        match bytes[end] {
            b'\\' => end += 2,
            b'"' => {
                let text: String = serde_json::from_str(&s[..=end]).ok()?;
                return Some((text, end + 1));
            }
            _ => end += 1,
        }
    }
    None
}

fn seek<'d>(doc: &'d mut Doc, legs: &[Leg]) -> Option<&'d mut Doc> {
    let mut at = doc;
    for leg in legs {
        at = match (at, leg) {
            (Doc::Object(members), Leg::Member(k)) => {
                &mut members.iter_mut().find(|(m, _)| m == k)?.1
            }
            (Doc::Array(items), Leg::Index(i)) => {
                let i = i.resolve(items.len())?;
                items.get_mut(i)?
            }
            _ => return None,
        };
    }
    Some(at)
}

/// Parses the JSON text the decoder prints (valid JSON), keeping scalars' text.
fn parse(s: &mut &[u8]) -> Result<Doc, DecodeError> {
    skip_space(s);
    match s.first() {
        Some(b'{') => {
            *s = &s[1..];
            let mut members = Vec::new();
            loop {
                skip_space(s);
                if s.first() == Some(&b'}') {
                    *s = &s[1..];
                    return Ok(Doc::Object(members));
                }
                if !members.is_empty() {
                    expect(s, b',')?;
                    skip_space(s);
                }
                let key = string(s)?;
                skip_space(s);
                expect(s, b':')?;
                members.push((key, parse(s)?));
            }
        }
        Some(b'[') => {
            *s = &s[1..];
            let mut items = Vec::new();
            loop {
                skip_space(s);
                if s.first() == Some(&b']') {
                    *s = &s[1..];
                    return Ok(Doc::Array(items));
                }
                if !items.is_empty() {
                    expect(s, b',')?;
                }
                items.push(parse(s)?);
            }
        }
        Some(b'"') => {
            let start = *s;
            string(s)?;
            let used = start.len() - s.len();
            Ok(Doc::Scalar(
                String::from_utf8_lossy(&start[..used]).into_owned(),
            ))
        }
        Some(_) => {
            let end = s
                .iter()
                .position(|b| matches!(b, b',' | b']' | b'}') || b.is_ascii_whitespace())
                .unwrap_or(s.len());
            let text = String::from_utf8_lossy(&s[..end]).into_owned();
            *s = &s[end..];
            Ok(Doc::Scalar(text))
        }
        None => Err(bad("a document that ends early")),
    }
}

fn skip_space(s: &mut &[u8]) {
    while s.first().is_some_and(u8::is_ascii_whitespace) {
        *s = &s[1..];
    }
}

fn expect(s: &mut &[u8], b: u8) -> Result<(), DecodeError> {
    match s.first() {
        Some(&x) if x == b => {
            *s = &s[1..];
            Ok(())
        }
        _ => Err(bad(format!("a document without its '{}'", char::from(b)))),
    }
}

fn string(s: &mut &[u8]) -> Result<String, DecodeError> {
    let text = std::str::from_utf8(s).map_err(|_| bad("a document that is not UTF-8"))?;
    let (value, used) = quoted(text).ok_or_else(|| bad("an unterminated string"))?;
    *s = &s[used..];
    Ok(value)
}

/// Prints a document as the decoder prints JSON.
fn print(doc: &Doc, out: &mut String) {
    match doc {
        Doc::Scalar(text) => out.push_str(text),
        Doc::Array(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push_str(", ");
                }
                print(item, out);
            }
            out.push(']');
        }
        Doc::Object(members) => {
            out.push('{');
            for (i, (k, v)) in members.iter().enumerate() {
                if i > 0 {
                    out.push_str(", ");
                }
                out.push_str(&serde_json::Value::from(k.as_str()).to_string());
                out.push_str(": ");
                print(v, out);
            }
            out.push('}');
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A change as MySQL writes it: operation, length-encoded path, length-encoded value.
    fn diff(op: u8, path: &str, value: Option<&[u8]>) -> Vec<u8> {
        let mut b = vec![op, path.len() as u8];
        b.extend_from_slice(path.as_bytes());
        if let Some(v) = value {
            b.push(v.len() as u8);
            b.extend_from_slice(v);
        }
        b
    }

    #[test]
    fn replace_insert_and_remove_give_the_new_document() {
        let before = r#"{"a": 1, "b": [1, 2]}"#;
        let mut d = diff(0, "$.a", Some(&[0x05, 10, 0])); // int16 10
        d.extend(diff(1, "$.b[1]", Some(&[0x0c, 1, b'x']))); // "x" between 1 and 2
        d.extend(diff(1, "$.c", Some(&[0x04, 1]))); // a new member, true
        d.extend(diff(2, "$.b[0]", None));
        d.extend(diff(1, r#"$."longer key""#, Some(&[0x04, 0]))); // null, after "c"
        assert_eq!(
            apply(before, &d).unwrap(),
            r#"{"a": 10, "b": ["x", 2], "c": true, "longer key": null}"#
        );
        // Members keep MySQL's order, by length first.
        let d = diff(1, "$.aa", Some(&[0x04, 2]));
        assert_eq!(
            apply(r#"{"b": 1, "ccc": 2}"#, &d).unwrap(),
            r#"{"b": 1, "aa": false, "ccc": 2}"#
        );
        // Array positions from the end.
        let d = diff(0, "$[last]", Some(&[0x05, 9, 0]));
        assert_eq!(apply("[1, 2, 3]", &d).unwrap(), "[1, 2, 9]");
        // No changes: the same document.
        assert_eq!(apply(before, &[]).unwrap(), before);
    }

    #[test]
    fn changes_that_do_not_fit_the_document_are_errors() {
        let before = r#"{"a": 1}"#;
        for d in [
            diff(0, "$.missing", Some(&[0x04, 0])),
            diff(1, "$.a", Some(&[0x04, 0])),
            diff(2, "$.a.b", None),
            diff(0, "$", Some(&[0x04, 0])),
            diff(7, "$.a", None),
            diff(0, "a.b", Some(&[0x04, 0])),
        ] {
            assert!(apply(before, &d).is_err(), "{d:?}");
        }
    }
}
