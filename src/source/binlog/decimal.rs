//! MySQL's packed binary DECIMAL, as row images and JSON documents hold it.

use super::cursor::{Cursor, DecodeError};
use crate::model::Decimal;

/// 10^n for the digit counts of a group.
const POW10: [u64; 10] = [
    1,
    10,
    100,
    1_000,
    10_000,
    100_000,
    1_000_000,
    10_000_000,
    100_000_000,
    1_000_000_000,
];

/// Bytes used by a group of 0..=9 leading or trailing decimal digits.
const DIG2BYTES: [usize; 10] = [0, 1, 1, 2, 2, 3, 3, 4, 4, 4];

/// Digit groups of a DECIMAL of at most 65 digits: whole groups of nine and a partial one on
/// each side of the point, at most nine in all.
const MAX_GROUPS: usize = 9;

/// Decodes MySQL's binary DECIMAL: digits in groups of nine per four big-endian bytes, the
/// partial groups at both ends packed smaller, the sign in the inverted top bit and every byte
/// inverted for negative numbers.
pub fn decode_decimal(
    c: &mut Cursor<'_>,
    precision: u8,
    scale: u8,
) -> Result<Decimal, DecodeError> {
    if precision <= 18 {
        return decode_narrow(c, precision, scale);
    }
    let layout = Layout::new(precision, scale);
    decode_wide(c.take(layout.size(), "decimal")?, layout, scale)
}

/// [`decode_decimal`] of at most 18 digits, the common case: the groups read as one integer
/// (the digits after the point are exactly `scale`) are the unscaled value, and it fits.
///
/// Always inlined: a decimal returned from a call, or merged with one, is stored in pieces
/// and read back in other widths, which stalls (measured: 9 % of the row decoder's samples).
#[inline(always)]
pub fn decode_narrow(c: &mut Cursor<'_>, precision: u8, scale: u8) -> Result<Decimal, DecodeError> {
    debug_assert!(precision <= 18);
    let layout = Layout::new(precision, scale);
    let mut groups = Groups::new(c.take(layout.size(), "decimal")?);
    let mut m = if layout.intg0x > 0 {
        groups.next(layout.intg0x)?
    } else {
        0
    };
    for _ in 0..layout.intg0 + layout.frac0 {
        m = m * POW10[9] + groups.next(9)?;
    }
    if layout.frac0x > 0 {
        m = m * POW10[layout.frac0x] + groups.next(layout.frac0x)?;
    }
    Ok(groups.signed(m as i64, scale))
}

/// How a DECIMAL(precision, scale) is packed: whole groups of nine digits and the partial
/// group's digits, before and after the point.
#[derive(Clone, Copy)]
struct Layout {
    intg: usize,
    intg0: usize,
    intg0x: usize,
    frac0: usize,
    frac0x: usize,
}

impl Layout {
    fn new(precision: u8, scale: u8) -> Self {
        let (intg, frac) = (usize::from(precision - scale), usize::from(scale));
        Layout {
            intg,
            intg0: intg / 9,
            intg0x: intg % 9,
            frac0: frac / 9,
            frac0x: frac % 9,
        }
    }

    fn size(self) -> usize {
        (self.intg0 + self.frac0) * 4 + DIG2BYTES[self.intg0x] + DIG2BYTES[self.frac0x]
    }

    /// Group widths in digits, most significant first.
    fn widths(self) -> impl Iterator<Item = usize> + Clone {
        let partial = |w: usize| std::iter::once(w).filter(|&w| w > 0);
        partial(self.intg0x)
            .chain(std::iter::repeat_n(9, self.intg0 + self.frac0))
            .chain(partial(self.frac0x))
    }
}

/// Reads digit groups straight from the image, the sign bit and (for negative numbers) every
/// byte flipped on the way.
struct Groups<'a> {
    raw: &'a [u8],
    at: usize,
    invert: u8,
}

impl<'a> Groups<'a> {
    fn new(raw: &'a [u8]) -> Self {
        let negative = raw.first().is_some_and(|b| b & 0x80 == 0);
        Groups {
            raw,
            at: 0,
            invert: if negative { 0xff } else { 0 },
        }
    }

    #[inline(always)]
    fn next(&mut self, width: usize) -> Result<u64, DecodeError> {
        let bytes = &self.raw[self.at..self.at + DIG2BYTES[width]];
        let mut v = bytes
            .iter()
            .fold(0u64, |v, &b| v << 8 | u64::from(b ^ self.invert));
        if self.at == 0 {
            v ^= 0x80 << (8 * (bytes.len() - 1));
        }
        self.at += bytes.len();
        if v >= POW10[width] {
            return Err(too_many_digits(v, width));
        }
        Ok(v)
    }

    fn negative(&self) -> bool {
        self.invert != 0
    }

    fn signed(&self, magnitude: i64, scale: u8) -> Decimal {
        Decimal::from_unscaled(
            if self.negative() {
                -magnitude
            } else {
                magnitude
            },
            scale,
        )
    }
}

#[cold]
fn too_many_digits(v: u64, width: usize) -> DecodeError {
    DecodeError::Invalid(format!(
        "decimal digit group {v} has more than {width} digits"
    ))
}

/// [`decode_decimal`] of more than 18 digits (DECIMAL allows 65), through their digits:
/// [`Decimal::from_digits`] picks the form.
fn decode_wide(raw: &[u8], layout: Layout, scale: u8) -> Result<Decimal, DecodeError> {
    let mut groups = Groups::new(raw);
    let mut values = [(0usize, 0u64); MAX_GROUPS];
    let mut n = 0;
    for width in layout.widths() {
        values[n] = (width, groups.next(width)?);
        n += 1;
    }
    let mut digits = [0u8; 72];
    let mut len = 0;
    for &(width, v) in &values[..n] {
        let mut v = v;
        for d in digits[len..len + width].iter_mut().rev() {
            *d = b'0' + (v % 10) as u8;
            v /= 10;
        }
        len += width;
    }
    let (int_digits, frac_digits) = digits[..len].split_at(layout.intg);
    Ok(
        Decimal::from_digits(groups.negative(), int_digits, frac_digits, scale)
            .expect("a decimal's groups are digits"),
    )
}
