//! GTID states of both servers: MariaDB's domain list and MySQL's executed set.

use std::fmt;

/// The server's GTID state at a position, in its own dialect: resuming by GTID needs it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum GtidState {
    /// MariaDB: the last sequence number per replication domain, `domain-server-seq,...`.
    MariaDb(DomainGtids),
    /// MySQL: the executed GTID set, `uuid:1-5:7,...`.
    MySql(GtidSet),
}

impl GtidState {
    /// Parses either dialect (MySQL's has `:`); empty text is an empty MariaDB state.
    pub fn parse(s: &str) -> Option<Self> {
        if s.contains(':') {
            GtidSet::parse(s).map(GtidState::MySql)
        } else {
            DomainGtids::parse(s).map(GtidState::MariaDb)
        }
    }

    /// Whether no transaction is known.
    pub fn is_empty(&self) -> bool {
        match self {
            GtidState::MariaDb(d) => d.0.is_empty(),
            GtidState::MySql(s) => s.0.is_empty(),
        }
    }
}

impl fmt::Display for GtidState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            GtidState::MariaDb(d) => d.fmt(f),
            GtidState::MySql(s) => s.fmt(f),
        }
    }
}

/// MariaDB's GTID state: the last sequence number per replication domain.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct DomainGtids(std::collections::BTreeMap<u32, (u32, u64)>);

impl DomainGtids {
    /// Parses `domain-server-seq[,domain-server-seq...]` (empty text is the empty state).
    pub fn parse(s: &str) -> Option<Self> {
        let mut state = DomainGtids::default();
        for part in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let mut it = part.split('-');
            let (d, srv, seq) = (it.next()?, it.next()?, it.next()?);
            if it.next().is_some() {
                return None;
            }
            state.set(d.parse().ok()?, srv.parse().ok()?, seq.parse().ok()?);
        }
        Some(state)
    }

    /// Records the GTID of a transaction.
    pub fn set(&mut self, domain: u32, server: u32, seq: u64) {
        self.0.insert(domain, (server, seq));
    }
}

impl fmt::Display for DomainGtids {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, (d, (srv, seq))) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str(",")?;
            }
            write!(f, "{d}-{srv}-{seq}")?;
        }
        Ok(())
    }
}

/// A MySQL GTID set: per source UUID and tag (MySQL 8.3+; `""` untagged), the transaction
/// numbers executed, as sorted, disjoint, non-adjacent `[start, end)` intervals (the form
/// COM_BINLOG_DUMP_GTID sends).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct GtidSet(std::collections::BTreeMap<Tsid, Vec<(u64, u64)>>);

/// A GTID source: server UUID and tag (`""` untagged).
type Tsid = ([u8; 16], String);

impl GtidSet {
    /// Parses `uuid:1-5:7[:tag:1-3][,uuid:...]` as `@@gtid_executed` prints it (newlines
    /// allowed).
    pub fn parse(s: &str) -> Option<Self> {
        let mut set = GtidSet::default();
        for part in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let mut it = part.split(':');
            let uuid = parse_uuid(it.next()?)?;
            // A tag applies to the intervals after it, and must have some.
            let (mut tag, mut bare_tag) = (String::new(), false);
            for item in it {
                if item.starts_with(|c: char| c.is_ascii_lowercase() || c == '_') {
                    (tag, bare_tag) = (item.to_string(), true);
                    continue;
                }
                let (a, b) = item.split_once('-').unwrap_or((item, item));
                let (a, b): (u64, u64) = (a.parse().ok()?, b.parse().ok()?);
                if a == 0 || b < a || b == u64::MAX {
                    return None;
                }
                set.insert(uuid, &tag, a, b + 1);
                bare_tag = false;
            }
            if bare_tag {
                return None;
            }
        }
        Some(set)
    }

    /// Adds transaction `gno` of source `uuid` and `tag`.
    pub fn add(&mut self, uuid: [u8; 16], tag: &str, gno: u64) {
        self.insert(uuid, tag, gno, gno.saturating_add(1));
    }

    /// Adds the transactions `[start, end)` of source `uuid` and `tag`, merging intervals.
    pub fn insert(&mut self, uuid: [u8; 16], tag: &str, start: u64, end: u64) {
        if start >= end {
            return;
        }
        let intervals = self.0.entry((uuid, tag.to_string())).or_default();
        intervals.push((start, end));
        intervals.sort_unstable();
        let mut merged: Vec<(u64, u64)> = Vec::with_capacity(intervals.len());
        for &(a, b) in intervals.iter() {
            match merged.last_mut() {
                Some(last) if a <= last.1 => last.1 = last.1.max(b),
                _ => merged.push((a, b)),
            }
        }
        *intervals = merged;
    }

    /// Each source UUID and tag (`""` untagged) with its `[start, end)` intervals.
    pub fn iter(&self) -> impl Iterator<Item = (&[u8; 16], &str, &[(u64, u64)])> {
        self.0
            .iter()
            .map(|((u, t), i)| (u, t.as_str(), i.as_slice()))
    }
}

/// The 16 bytes of a textual UUID (hyphens optional).
fn parse_uuid(s: &str) -> Option<[u8; 16]> {
    let hex: String = s.chars().filter(|c| *c != '-').collect();
    if hex.len() != 32 {
        return None;
    }
    let mut out = [0u8; 16];
    for (i, b) in out.iter_mut().enumerate() {
        *b = u8::from_str_radix(hex.get(2 * i..2 * i + 2)?, 16).ok()?;
    }
    Some(out)
}

/// A source UUID as MySQL prints it: `8-4-4-4-12` lower-case hex digits.
pub fn format_uuid(uuid: &[u8; 16]) -> String {
    let hex: String = uuid.iter().map(|b| format!("{b:02x}")).collect();
    format!(
        "{}-{}-{}-{}-{}",
        &hex[..8],
        &hex[8..12],
        &hex[12..16],
        &hex[16..20],
        &hex[20..]
    )
}

impl fmt::Display for GtidSet {
    /// MySQL's form: a UUID once, its untagged intervals, then each tag and its intervals.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut last: Option<&[u8; 16]> = None;
        for ((uuid, tag), intervals) in &self.0 {
            if last != Some(uuid) {
                if last.is_some() {
                    f.write_str(",")?;
                }
                f.write_str(&format_uuid(uuid))?;
                last = Some(uuid);
            }
            if !tag.is_empty() {
                write!(f, ":{tag}")?;
            }
            for &(a, b) in intervals {
                if b - a == 1 {
                    write!(f, ":{a}")?;
                } else {
                    write!(f, ":{a}-{}", b - 1)?;
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gtid_states_round_trip() {
        let mut s = DomainGtids::parse("1-2-30, 0-1-5").unwrap();
        assert_eq!(s.to_string(), "0-1-5,1-2-30");
        s.set(0, 3, 6);
        assert_eq!(s.to_string(), "0-3-6,1-2-30");
        assert_eq!(DomainGtids::parse("").unwrap(), DomainGtids::default());
        assert_eq!(DomainGtids::parse("0-1"), None);
        assert_eq!(DomainGtids::parse("0-1-x"), None);
        assert!(matches!(
            GtidState::parse("0-1-5"),
            Some(GtidState::MariaDb(_))
        ));
        assert!(GtidState::parse("").unwrap().is_empty());
    }

    #[test]
    fn mysql_gtid_sets_merge_and_print_like_gtid_executed() {
        let a = "3e11fa47-71ca-11e1-9e33-c80aa9429562";
        let b = "00000000-0000-0000-0000-000000000001";
        let text = format!("{a}:1-5:7,\n{b}:3");
        let Some(GtidState::MySql(mut set)) = GtidState::parse(&text) else {
            panic!()
        };
        assert_eq!(set.to_string(), format!("{b}:3,{a}:1-5:7"));
        let uuid = *set.iter().nth(1).unwrap().0;
        set.add(uuid, "", 6); // bridges 1-5 and 7
        set.add(uuid, "", 9);
        set.add(uuid, "", 3); // already in
        assert_eq!(set.to_string(), format!("{b}:3,{a}:1-7:9"));
        assert_eq!(set.iter().nth(1).unwrap().2, [(1, 8), (9, 10)]);
        assert_eq!(GtidSet::parse(&set.to_string()), Some(set.clone()));
        // Tags (MySQL 8.3+) follow the UUID's untagged intervals.
        set.add(uuid, "mytag", 2);
        set.add(uuid, "mytag", 1);
        set.add(uuid, "a_tag", 4);
        assert_eq!(
            set.to_string(),
            format!("{b}:3,{a}:1-7:9:a_tag:4:mytag:1-2")
        );
        assert_eq!(GtidSet::parse(&set.to_string()), Some(set));
        for bad in [
            format!("{a}:0"),
            format!("{a}:5-3"),
            "xyz:1".into(),
            format!("{a}:x"),
        ] {
            assert_eq!(GtidSet::parse(&bad), None, "{bad}");
        }
    }
}
