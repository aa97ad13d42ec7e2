//! The optional metadata of a TABLE_MAP (MySQL 8.0.1+, MariaDB 10.5+): names, signedness,
//! character sets, labels, keys, visibility.

use super::*;

/// Optional metadata this decoder uses.
#[derive(Default)]
pub(super) struct OptionalMetadata<'a> {
    pub(super) signedness: Option<&'a [u8]>,
    pub(super) text_charsets: Option<Charsets>,
    pub(super) enum_set_charsets: Option<Charsets>,
    pub(super) names: Option<Vec<String>>,
    pub(super) primary_key: Option<Vec<usize>>,
    pub(super) set_labels: Vec<Vec<&'a [u8]>>,
    pub(super) enum_labels: Vec<Vec<&'a [u8]>>,
    /// Declared dimensions of the VECTOR columns, in column order.
    pub(super) vector_dims: Vec<u64>,
}

/// Collations of the character (or ENUM/SET) columns, counted among those columns only.
pub(super) enum Charsets {
    /// A default with exceptions by index.
    Default(u64, Vec<(usize, u64)>),
    /// One per column.
    PerColumn(Vec<u64>),
}

impl Charsets {
    pub(super) fn parse_default(mut v: Cursor<'_>) -> Result<Self, DecodeError> {
        let default = v.lenenc("default charset")?;
        let mut exceptions = Vec::new();
        while !v.is_empty() {
            let idx = v.lenenc_usize("charset column index")?;
            exceptions.push((idx, v.lenenc("charset collation")?));
        }
        Ok(Charsets::Default(default, exceptions))
    }

    pub(super) fn parse_columns(mut v: Cursor<'_>) -> Result<Self, DecodeError> {
        let mut ids = Vec::new();
        while !v.is_empty() {
            ids.push(v.lenenc("column charset")?);
        }
        Ok(Charsets::PerColumn(ids))
    }

    /// The collation of the `nth` column of the kind.
    pub(super) fn nth(&self, nth: usize) -> Result<u64, DecodeError> {
        match self {
            Charsets::PerColumn(ids) => ids.get(nth).copied().ok_or(DecodeError::Invalid(
                "fewer column charsets than character columns".into(),
            )),
            Charsets::Default(default, exceptions) => Ok(exceptions
                .iter()
                .find(|(i, _)| *i == nth)
                .map_or(*default, |(_, c)| *c)),
        }
    }
}

pub(super) fn parse_labels<'a>(mut v: Cursor<'a>) -> Result<Vec<Vec<&'a [u8]>>, DecodeError> {
    let mut columns = Vec::new();
    while !v.is_empty() {
        let n = v.lenenc_usize("label count")?;
        let mut labels = Vec::with_capacity(n.min(65_535));
        for _ in 0..n {
            labels.push(v.lenenc_bytes("label")?);
        }
        columns.push(labels);
    }
    Ok(columns)
}

pub(super) fn parse_optional(mut c: Cursor<'_>) -> Result<OptionalMetadata<'_>, DecodeError> {
    let mut m = OptionalMetadata::default();
    while !c.is_empty() {
        let kind = c.u8("optional metadata type")?;
        let mut v = Cursor::new(c.lenenc_bytes("optional metadata field")?);
        match kind {
            meta::SIGNEDNESS => m.signedness = Some(v.rest()),
            meta::DEFAULT_CHARSET => m.text_charsets = Some(Charsets::parse_default(v)?),
            meta::COLUMN_CHARSET => m.text_charsets = Some(Charsets::parse_columns(v)?),
            meta::ENUM_AND_SET_DEFAULT_CHARSET => {
                m.enum_set_charsets = Some(Charsets::parse_default(v)?)
            }
            meta::ENUM_AND_SET_COLUMN_CHARSET => {
                m.enum_set_charsets = Some(Charsets::parse_columns(v)?)
            }
            meta::SET_STR_VALUE => m.set_labels = parse_labels(v)?,
            meta::VECTOR_DIMENSIONALITY => {
                while !v.is_empty() {
                    m.vector_dims.push(v.lenenc("vector dimensions")?);
                }
            }
            meta::ENUM_STR_VALUE => m.enum_labels = parse_labels(v)?,
            meta::COLUMN_NAME => {
                let mut names = Vec::new();
                while !v.is_empty() {
                    let n = v.lenenc_bytes("column name")?;
                    names
                        .push(String::from_utf8(n.to_vec()).map_err(|_| {
                            DecodeError::Invalid("column name is not UTF-8".into())
                        })?);
                }
                m.names = Some(names);
            }
            meta::SIMPLE_PRIMARY_KEY => {
                let mut key = Vec::new();
                while !v.is_empty() {
                    key.push(v.lenenc_usize("primary key column")?);
                }
                m.primary_key = Some(key);
            }
            meta::PRIMARY_KEY_WITH_PREFIX => {
                // A prefix key still identifies the row by the whole column value.
                let mut key = Vec::new();
                while !v.is_empty() {
                    key.push(v.lenenc_usize("primary key column")?);
                    v.lenenc("primary key prefix")?;
                }
                m.primary_key = Some(key);
            }
            _ => {} // geometry subtypes, column visibility: not needed to decode values
        }
    }
    Ok(m)
}

/// Labels of an ENUM or SET column as UTF-8.
pub(super) fn labels(
    raw: Option<&Vec<&[u8]>>,
    charset: Charset,
    column: &str,
) -> Result<Arc<[String]>, TableMapError> {
    let raw = raw.ok_or(TableMapError::MissingMetadata("ENUM/SET labels"))?;
    let codec = match charset {
        Charset::Text(codec) => codec,
        // Labels of a binary ENUM are bytes; as text they must be UTF-8.
        Charset::Binary => Codec::Utf8,
        Charset::Other(cs) => {
            return Err(DecodeError::Invalid(format!(
                "column `{column}`: the labels' character set {cs} is unknown to Sluice"
            ))
            .into());
        }
    };
    raw.iter()
        .map(|l| {
            codec.decode(l).ok_or_else(|| {
                DecodeError::Invalid(format!("column `{column}`: a label is not valid text")).into()
            })
        })
        .collect()
}
