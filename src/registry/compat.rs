//! Schema compatibility by the Avro specification's schema-resolution rules: can a reader
//! with one schema read data written with another? The registry's levels (BACKWARD, FORWARD,
//! FULL and their transitive forms) are built from this one question.
//!
//! The rules, from the specification's "Schema Resolution": primitive types match themselves
//! and the promotions int -> long/float/double, long -> float/double, float -> double,
//! string <-> bytes; records, enums and fixed match by unqualified name (or a reader alias),
//! fixed by size too; a reader field missing from the writer needs a default; a writer enum
//! symbol missing from the reader needs the reader's enum default; every branch of a writer
//! union must be readable; a non-union writer must match some branch of a reader union;
//! decimals match when precision and scale do. Other logical types resolve as their
//! underlying types.

use std::collections::{HashMap, HashSet};
use std::fmt;

use apache_avro::Schema;
use apache_avro::schema::{InnerDecimalSchema, Name, UuidSchema};

/// Why a reader cannot read a writer's data, with the path into the reader schema.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Incompatibility {
    /// Confluent's error type, e.g. `READER_FIELD_MISSING_DEFAULT_VALUE`.
    pub kind: &'static str,
    /// JSON-pointer-like path, e.g. `/fields/3/type`.
    pub path: String,
    /// What differs.
    pub message: String,
}

impl fmt::Display for Incompatibility {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} at '{}': {}", self.kind, self.path, self.message)
    }
}

/// A compatibility level, as the registry's `/config` names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Level {
    /// No checks.
    None,
    /// The new schema reads data of the latest version.
    Backward,
    /// ... of every version.
    BackwardTransitive,
    /// The latest version reads data of the new schema.
    Forward,
    /// Every version reads data of the new schema.
    ForwardTransitive,
    /// Backward and forward against the latest version.
    Full,
    /// Backward and forward against every version.
    FullTransitive,
}

impl Level {
    /// Every level, in the registry's spelling.
    pub const ALL: [Level; 7] = [
        Level::None,
        Level::Backward,
        Level::BackwardTransitive,
        Level::Forward,
        Level::ForwardTransitive,
        Level::Full,
        Level::FullTransitive,
    ];

    /// Parses a level, ignoring case.
    pub fn parse(s: &str) -> Option<Level> {
        Level::ALL
            .into_iter()
            .find(|l| l.as_str().eq_ignore_ascii_case(s))
    }

    /// The registry's spelling, e.g. `BACKWARD_TRANSITIVE`.
    pub fn as_str(self) -> &'static str {
        match self {
            Level::None => "NONE",
            Level::Backward => "BACKWARD",
            Level::BackwardTransitive => "BACKWARD_TRANSITIVE",
            Level::Forward => "FORWARD",
            Level::ForwardTransitive => "FORWARD_TRANSITIVE",
            Level::Full => "FULL",
            Level::FullTransitive => "FULL_TRANSITIVE",
        }
    }

    fn transitive(self) -> bool {
        matches!(
            self,
            Level::BackwardTransitive | Level::ForwardTransitive | Level::FullTransitive
        )
    }

    fn backward(self) -> bool {
        matches!(
            self,
            Level::Backward | Level::BackwardTransitive | Level::Full | Level::FullTransitive
        )
    }

    fn forward(self) -> bool {
        matches!(
            self,
            Level::Forward | Level::ForwardTransitive | Level::Full | Level::FullTransitive
        )
    }
}

/// A parsed schema with the schemas its references name (their named types resolve).
pub struct Parsed {
    /// The schema itself.
    pub schema: Schema,
    /// The referenced schemas, in dependency order.
    pub references: Vec<Schema>,
}

/// One failed check of a new schema against an existing version.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    /// The existing version it was checked against.
    pub version: u32,
    /// `backward` (the new schema reading old data) or `forward` (old reading new).
    pub direction: &'static str,
    /// Why.
    pub incompatibility: Incompatibility,
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} (checking {} against version {})",
            self.incompatibility, self.direction, self.version
        )
    }
}

/// Checks `new` against `existing` versions (oldest first, `(version, schema)`) at `level`:
/// against the latest only, or every one for the transitive levels. Empty if compatible.
pub fn check(level: Level, new: &Parsed, existing: &[(u32, Parsed)]) -> Vec<Failure> {
    let against = match existing.split_last() {
        None => return Vec::new(),
        Some((latest, _)) if !level.transitive() => std::slice::from_ref(latest),
        Some(_) => existing,
    };
    let mut failures = Vec::new();
    for (version, old) in against.iter().rev() {
        let mut record = |direction, found: Vec<Incompatibility>| {
            failures.extend(found.into_iter().map(|incompatibility| Failure {
                version: *version,
                direction,
                incompatibility,
            }))
        };
        if level.backward() {
            record("backward", can_read(old, new));
        }
        if level.forward() {
            record("forward", can_read(new, old));
        }
    }
    failures
}

/// Named types of a schema document (records, enums, fixed), by full name.
struct Names<'s>(HashMap<&'s Name, &'s Schema>);

impl<'s> Names<'s> {
    fn of(parsed: &'s Parsed) -> Self {
        let mut names = HashMap::new();
        for s in parsed.references.iter().chain([&parsed.schema]) {
            collect(s, &mut names);
        }
        Names(names)
    }

    /// `s` itself, or the definition a reference names.
    fn resolve(&self, s: &'s Schema) -> &'s Schema {
        match s {
            Schema::Ref { name } => self.0.get(name).copied().unwrap_or(s),
            _ => s,
        }
    }
}

fn collect<'s>(s: &'s Schema, names: &mut HashMap<&'s Name, &'s Schema>) {
    match s {
        // A record defined once; a second sighting is a use, whose fields were collected.
        Schema::Record(r) if names.insert(&r.name, s).is_none() => {
            for f in &r.fields {
                collect(&f.schema, names);
            }
        }
        Schema::Enum(e) => {
            names.insert(&e.name, s);
        }
        Schema::Fixed(f) | Schema::Duration(f) => {
            names.insert(&f.name, s);
        }
        Schema::Decimal(d) => {
            if let InnerDecimalSchema::Fixed(f) = &d.inner {
                names.insert(&f.name, s);
            }
        }
        Schema::Uuid(UuidSchema::Fixed(f)) => {
            names.insert(&f.name, s);
        }
        Schema::Array(a) => collect(&a.items, names),
        Schema::Map(m) => collect(&m.types, names),
        Schema::Union(u) => u.variants().iter().for_each(|v| collect(v, names)),
        _ => {}
    }
}

/// The type a schema resolves as: logical types collapse to their underlying type, except
/// decimal, whose precision and scale take part in resolution.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Null,
    Boolean,
    Int,
    Long,
    Float,
    Double,
    Bytes,
    String,
    Array,
    Map,
    Union,
    Record,
    Enum,
    Fixed,
}

fn kind(s: &Schema) -> Kind {
    match s {
        Schema::Null => Kind::Null,
        Schema::Boolean => Kind::Boolean,
        Schema::Int | Schema::Date | Schema::TimeMillis => Kind::Int,
        Schema::Long
        | Schema::TimeMicros
        | Schema::TimestampMillis
        | Schema::TimestampMicros
        | Schema::TimestampNanos
        | Schema::LocalTimestampMillis
        | Schema::LocalTimestampMicros
        | Schema::LocalTimestampNanos => Kind::Long,
        Schema::Float => Kind::Float,
        Schema::Double => Kind::Double,
        Schema::Bytes | Schema::BigDecimal | Schema::Uuid(UuidSchema::Bytes) => Kind::Bytes,
        Schema::Decimal(d) => match d.inner {
            InnerDecimalSchema::Bytes => Kind::Bytes,
            InnerDecimalSchema::Fixed(_) => Kind::Fixed,
        },
        Schema::String | Schema::Uuid(UuidSchema::String) => Kind::String,
        Schema::Uuid(UuidSchema::Fixed(_)) | Schema::Fixed(_) | Schema::Duration(_) => Kind::Fixed,
        Schema::Array(_) => Kind::Array,
        Schema::Map(_) => Kind::Map,
        Schema::Union(_) => Kind::Union,
        Schema::Record(_) => Kind::Record,
        Schema::Enum(_) => Kind::Enum,
        // Unresolvable references were refused when the schema was parsed.
        Schema::Ref { .. } => Kind::Record,
    }
}

fn promotes(writer: Kind, reader: Kind) -> bool {
    use Kind::*;
    writer == reader
        || matches!(
            (writer, reader),
            (Int, Long | Float | Double)
                | (Long, Float | Double)
                | (Float, Double)
                | (String, Bytes)
                | (Bytes, String)
        )
}

/// Every reason `reader` cannot read data written with `writer`; empty if it can.
pub fn can_read(writer: &Parsed, reader: &Parsed) -> Vec<Incompatibility> {
    let (writer_names, reader_names) = (Names::of(writer), Names::of(reader));
    let mut check = Check {
        writer_names: &writer_names,
        reader_names: &reader_names,
        seen: HashSet::new(),
        found: Vec::new(),
    };
    check.schemas(&writer.schema, &reader.schema, "");
    check.found
}

struct Check<'n, 's> {
    writer_names: &'n Names<'s>,
    reader_names: &'n Names<'s>,
    /// Named pairs already being compared: recursive types are assumed compatible within
    /// themselves, which is what makes the check finish.
    seen: HashSet<(&'s Name, &'s Name)>,
    found: Vec<Incompatibility>,
}

impl<'s> Check<'_, 's> {
    fn fail(&mut self, kind: &'static str, path: &str, message: String) {
        self.found.push(Incompatibility {
            kind,
            path: if path.is_empty() {
                "/".into()
            } else {
                path.into()
            },
            message,
        });
    }

    /// Whether the pair is readable, without recording why not (for choosing union branches).
    fn readable(&self, writer: &'s Schema, reader: &'s Schema) -> bool {
        let mut probe = Check {
            writer_names: self.writer_names,
            reader_names: self.reader_names,
            seen: self.seen.clone(),
            found: Vec::new(),
        };
        probe.schemas(writer, reader, "");
        probe.found.is_empty()
    }

    fn schemas(&mut self, writer: &'s Schema, reader: &'s Schema, path: &str) {
        let writer = self.writer_names.resolve(writer);
        let reader = self.reader_names.resolve(reader);
        match (writer, reader) {
            (Schema::Union(w), _) => {
                for (i, branch) in w.variants().iter().enumerate() {
                    if !self.readable(branch, reader) {
                        self.fail(
                            "MISSING_UNION_BRANCH",
                            path,
                            format!(
                                "the reader cannot read branch {i} ({}) of the writer's union",
                                describe(branch)
                            ),
                        );
                    }
                }
            }
            (_, Schema::Union(r)) => {
                if !r.variants().iter().any(|b| self.readable(writer, b)) {
                    self.fail(
                        "MISSING_UNION_BRANCH",
                        path,
                        format!(
                            "no branch of the reader's union reads the writer's {}",
                            describe(writer)
                        ),
                    );
                }
            }
            _ if !promotes(kind(writer), kind(reader)) => self.fail(
                "TYPE_MISMATCH",
                path,
                format!(
                    "the reader's {} cannot read the writer's {}",
                    describe(reader),
                    describe(writer)
                ),
            ),
            (Schema::Record(w), Schema::Record(r)) => {
                if !names_match(&w.name, &r.name, r.aliases.as_deref()) {
                    return self.name_mismatch(path, &w.name, &r.name);
                }
                if !self.seen.insert((&w.name, &r.name)) {
                    return;
                }
                for (i, rf) in r.fields.iter().enumerate() {
                    let field_path = format!("{path}/fields/{i}");
                    let wf = w
                        .fields
                        .iter()
                        .find(|wf| wf.name == rf.name || rf.aliases.contains(&wf.name));
                    match wf {
                        Some(wf) => self.schemas(&wf.schema, &rf.schema, &format!("{field_path}/type")),
                        None if rf.default.is_none() => self.fail(
                            "READER_FIELD_MISSING_DEFAULT_VALUE",
                            &field_path,
                            format!(
                                "the reader's field `{}` has no default and the writer has no such field",
                                rf.name
                            ),
                        ),
                        None => {}
                    }
                }
            }
            (Schema::Enum(w), Schema::Enum(r)) => {
                if !names_match(&w.name, &r.name, r.aliases.as_deref()) {
                    return self.name_mismatch(path, &w.name, &r.name);
                }
                let missing: Vec<&str> = w
                    .symbols
                    .iter()
                    .filter(|s| !r.symbols.contains(s))
                    .map(String::as_str)
                    .collect();
                if !missing.is_empty() && r.default.is_none() {
                    self.fail(
                        "MISSING_ENUM_SYMBOLS",
                        &format!("{path}/symbols"),
                        format!(
                            "the reader's enum lacks the writer's symbols [{}] and has no default",
                            missing.join(", ")
                        ),
                    );
                }
            }
            (Schema::Array(w), Schema::Array(r)) => {
                self.schemas(&w.items, &r.items, &format!("{path}/items"))
            }
            (Schema::Map(w), Schema::Map(r)) => {
                self.schemas(&w.types, &r.types, &format!("{path}/values"))
            }
            _ => self.fixed_and_decimal(writer, reader, path),
        }
    }

    /// Fixed needs equal names and sizes; decimals (on bytes or fixed) equal precision and
    /// scale.
    fn fixed_and_decimal(&mut self, writer: &'s Schema, reader: &'s Schema, path: &str) {
        let fixed = |s: &'s Schema| match s {
            Schema::Fixed(f) | Schema::Duration(f) | Schema::Uuid(UuidSchema::Fixed(f)) => Some(f),
            Schema::Decimal(d) => match &d.inner {
                InnerDecimalSchema::Fixed(f) => Some(f),
                InnerDecimalSchema::Bytes => None,
            },
            _ => None,
        };
        if let (Some(w), Some(r)) = (fixed(writer), fixed(reader)) {
            if !names_match(&w.name, &r.name, r.aliases.as_deref()) {
                return self.name_mismatch(path, &w.name, &r.name);
            }
            if w.size != r.size {
                self.fail(
                    "FIXED_SIZE_MISMATCH",
                    &format!("{path}/size"),
                    format!("expected {}, found {}", w.size, r.size),
                );
            }
        }
        if let (Schema::Decimal(w), Schema::Decimal(r)) = (writer, reader)
            && (w.precision, w.scale) != (r.precision, r.scale)
        {
            self.fail(
                "TYPE_MISMATCH",
                path,
                format!(
                    "decimal({},{}) written, decimal({},{}) read: decimals resolve only with \
                     equal precision and scale",
                    w.precision, w.scale, r.precision, r.scale
                ),
            );
        }
    }

    fn name_mismatch(&mut self, path: &str, writer: &Name, reader: &Name) {
        self.fail(
            "NAME_MISMATCH",
            &format!("{path}/name"),
            format!("expected {}, found {}", writer.name(), reader.name()),
        );
    }
}

/// Unqualified names equal, or the writer's name among the reader's aliases.
fn names_match(
    writer: &Name,
    reader: &Name,
    aliases: Option<&[apache_avro::schema::Alias]>,
) -> bool {
    writer.name() == reader.name()
        || aliases
            .unwrap_or_default()
            .iter()
            .any(|a| a.name() == writer.name())
}

fn describe(s: &Schema) -> String {
    match s {
        Schema::Record(r) => format!("record {}", r.name.name()),
        Schema::Enum(e) => format!("enum {}", e.name.name()),
        Schema::Fixed(f) => format!("fixed {}", f.name.name()),
        Schema::Decimal(d) => format!("decimal({},{})", d.precision, d.scale),
        Schema::Ref { name } => name.name().to_string(),
        other => format!("{:?}", kind(other)).to_lowercase(),
    }
}
