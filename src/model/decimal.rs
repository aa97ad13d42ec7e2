//! Exact DECIMAL values.

use std::fmt;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// An exact DECIMAL value at its column's scale, e.g. `-123.45` in a DECIMAL(10,2) column.
///
/// A value whose digits, read as one integer, fit 63 bits (every DECIMAL of up to 18 digits)
/// is held as that integer: the binlog decoder and the Avro encoder, which run for every
/// decimal of every row, never go through text. Wider values (DECIMAL allows 65 digits) are
/// held as text. The form depends on the value alone, so equal values compare equal
/// whichever reader produced them. Serialized as its text.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Decimal(Repr);

#[derive(Clone, Debug, PartialEq, Eq)]
enum Repr {
    /// `unscaled / 10^scale`.
    Int { unscaled: i64, scale: u8 },
    /// `-?digits[.digits]`: exactly the scale's digits after the point, no leading zeros,
    /// no sign on zero; what MySQL itself prints.
    Text(Box<str>),
}

impl Decimal {
    /// The decimal `unscaled / 10^scale`.
    pub fn from_unscaled(unscaled: i64, scale: u8) -> Self {
        Decimal(Repr::Int { unscaled, scale })
    }

    /// The value whose digits are `int` then `frac` (ASCII digits; `frac` at most `scale` of
    /// them, padded with zeros to it), negative if `negative`. Leading zeros are allowed.
    /// `None` if a byte is not a digit or `frac` is longer than `scale`.
    pub fn from_digits(negative: bool, int: &[u8], frac: &[u8], scale: u8) -> Option<Self> {
        let scale_len = usize::from(scale);
        if frac.len() > scale_len || !int.iter().chain(frac).all(u8::is_ascii_digit) {
            return None;
        }
        let padding = std::iter::repeat_n(&b'0', scale_len - frac.len());
        let magnitude = int
            .iter()
            .chain(frac)
            .chain(padding)
            .try_fold(0i64, |v, &d| {
                v.checked_mul(10)?.checked_add(i64::from(d - b'0'))
            });
        if let Some(m) = magnitude {
            return Some(Decimal::from_unscaled(if negative { -m } else { m }, scale));
        }
        let int = match int.iter().position(|&d| d != b'0') {
            Some(first) => &int[first..],
            None => b"0",
        };
        // Wider than 63 bits, so not zero: the sign stays.
        let mut text = String::with_capacity(int.len() + scale_len + 2);
        if negative {
            text.push('-');
        }
        text.extend(int.iter().map(|&d| char::from(d)));
        if scale > 0 {
            text.push('.');
            text.extend(frac.iter().map(|&d| char::from(d)));
            text.extend(std::iter::repeat_n('0', scale_len - frac.len()));
        }
        Some(Decimal(Repr::Text(text.into())))
    }

    /// Parses decimal text as MySQL prints it for a column of `scale`: an optional `-`, at
    /// least one digit, then optionally a point and at most `scale` digits. `None` otherwise.
    pub fn parse(text: &str, scale: u8) -> Option<Self> {
        let (negative, digits) = match text.strip_prefix('-') {
            Some(rest) => (true, rest),
            None => (false, text),
        };
        // Byte search: `split_once('.')` goes through a char searcher, and this runs for every
        // decimal of every snapshot row.
        let digits = digits.as_bytes();
        let (int, frac) = match digits.iter().position(|&b| b == b'.') {
            Some(point) => (&digits[..point], &digits[point + 1..]),
            None => (digits, &[][..]),
        };
        if int.is_empty() {
            return None;
        }
        Decimal::from_digits(negative, int, frac, scale)
    }

    /// The unscaled value (`-123.45` at scale 2 is -12345) if it fits 63 bits; `None` for
    /// wider values, which [`Decimal`]'s text gives.
    pub fn unscaled(&self) -> Option<i64> {
        match self.0 {
            Repr::Int { unscaled, .. } => Some(unscaled),
            Repr::Text(_) => None,
        }
    }
}

impl fmt::Display for Decimal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (unscaled, scale) = match &self.0 {
            Repr::Int { unscaled, scale } => (*unscaled, usize::from(*scale)),
            Repr::Text(text) => return f.write_str(text),
        };
        // The digits right-aligned in a buffer wide enough for a zero before the point and
        // any scale (MariaDB allows 38).
        let mut digits = [b'0'; 20 + 256];
        let mut at = digits.len();
        let mut m = unscaled.unsigned_abs();
        while m > 0 {
            at -= 1;
            digits[at] = b'0' + (m % 10) as u8;
            m /= 10;
        }
        let start = at.min(digits.len() - scale - 1);
        let (int, frac) = digits[start..].split_at(digits.len() - start - scale);
        if unscaled < 0 {
            f.write_str("-")?;
        }
        f.write_str(ascii(int))?;
        if scale > 0 {
            f.write_str(".")?;
            f.write_str(ascii(frac))?;
        }
        Ok(())
    }
}

fn ascii(digits: &[u8]) -> &str {
    std::str::from_utf8(digits).expect("digits are ASCII")
}

impl Serialize for Decimal {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Decimal {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        // The text carries its scale: exactly the column's scale digits follow the point.
        let scale = text.split_once('.').map_or(0, |(_, frac)| frac.len());
        u8::try_from(scale)
            .ok()
            .and_then(|scale| Decimal::parse(&text, scale))
            .ok_or_else(|| serde::de::Error::custom(format!("{text:?} is not a decimal")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_round_trips_in_both_forms() {
        for (text, scale, narrow) in [
            ("0", 0, true),
            ("0.00", 2, true),
            ("-0.50", 2, true),
            ("123.45", 2, true),
            ("-9223372036854775807", 0, true),
            ("0.000000000000000000000000000001", 30, true),
            ("9223372036854775808", 0, false),
            ("-92233720368547758.08", 2, false),
            (
                "-12345678901234567890123456789.012345678901234567890",
                21,
                false,
            ),
        ] {
            let d = Decimal::parse(text, scale).unwrap();
            assert_eq!(d.to_string(), text);
            assert_eq!(d.unscaled().is_some(), narrow, "{text}");
            let json = serde_json::to_string(&d).unwrap();
            assert_eq!(serde_json::from_str::<Decimal>(&json).unwrap(), d);
        }
    }

    #[test]
    fn random_digits_read_as_their_big_integer() {
        use num_bigint::BigInt;
        let mut rng = fastrand::Rng::with_seed(20261201);
        let digits = |rng: &mut fastrand::Rng, n: usize| -> Vec<u8> {
            (0..n).map(|_| b'0' + rng.u8(0..10)).collect()
        };
        for _ in 0..50_000 {
            let scale = rng.u8(0..=38);
            let int_len = rng.usize(0..=30);
            let int = digits(&mut rng, int_len);
            let frac_len = rng.usize(0..=usize::from(scale).min(20));
            let frac = digits(&mut rng, frac_len);
            let negative = rng.bool();
            let d = Decimal::from_digits(negative, &int, &frac, scale).unwrap();

            let mut all = [int.as_slice(), &frac].concat();
            all.resize(int.len() + usize::from(scale), b'0');
            let magnitude = BigInt::parse_bytes(&all, 10).unwrap_or_default();
            let mut text = format!("{magnitude:0>width$}", width = usize::from(scale) + 1);
            if scale > 0 {
                text.insert(text.len() - usize::from(scale), '.');
            }
            if negative && magnitude != BigInt::ZERO {
                text.insert(0, '-');
            }
            let what = format!("{negative} {int:?} {frac:?} {scale}");
            assert_eq!(d.to_string(), text, "{what}");
            assert_eq!(
                d.unscaled().is_some(),
                magnitude <= BigInt::from(i64::MAX),
                "{what}"
            );
        }
        assert_eq!(Decimal::from_digits(false, b"1", b"2x", 3), None);
        assert_eq!(Decimal::from_digits(false, b"1", b"234", 2), None);
    }

    #[test]
    fn server_text_is_made_canonical() {
        let canonical = |t: &str, s| Decimal::parse(t, s).map(|d| d.to_string());
        assert_eq!(canonical("5", 2).as_deref(), Some("5.00"));
        assert_eq!(canonical("-0.00", 2).as_deref(), Some("0.00"));
        assert_eq!(canonical("007", 0).as_deref(), Some("7"));
        assert_eq!(canonical("5.", 0).as_deref(), Some("5"));
        assert_eq!(canonical("-5.", 0).as_deref(), Some("-5"));
        let wide = format!("{}.5", "9".repeat(20));
        assert_eq!(canonical(&format!("000{wide}"), 1), Some(wide));
        for bad in ["1.234", "1e5", "", "-", ".5", "1.2.3", "+1", " 1"] {
            assert_eq!(canonical(bad, 2), None, "{bad:?}");
        }
        assert_eq!(
            Decimal::parse("-1.5", 1),
            Some(Decimal::from_unscaled(-15, 1))
        );
    }
}
