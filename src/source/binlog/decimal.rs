//! MySQL's packed binary DECIMAL, as row images and JSON documents hold it.

use super::cursor::{Cursor, DecodeError};

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

/// Decodes MySQL's binary DECIMAL: digits in groups of nine per four big-endian bytes, the
/// partial groups at both ends packed smaller, the sign in the inverted top bit and every byte
/// inverted for negative numbers. Returns the text MySQL prints, e.g. `-123.4500`.
pub fn decode_decimal(c: &mut Cursor<'_>, precision: u8, scale: u8) -> Result<String, DecodeError> {
    let (intg, frac) = (usize::from(precision - scale), usize::from(scale));
    let (intg0, intg0x, frac0, frac0x) = (intg / 9, intg % 9, frac / 9, frac % 9);
    let size = intg0 * 4 + DIG2BYTES[intg0x] + frac0 * 4 + DIG2BYTES[frac0x];
    let raw = c.take(size, "decimal")?;
    let negative = raw.first().is_some_and(|b| b & 0x80 == 0);
    let invert = if negative { 0xff } else { 0 };
    // Groups are read straight from the image, the sign bit and (for negative numbers) every
    // byte flipped on the way: this runs for every decimal of every row.
    let mut at = 0;
    let mut group = |digits: usize| -> Result<u64, DecodeError> {
        let v = raw[at..at + DIG2BYTES[digits]]
            .iter()
            .enumerate()
            .fold(0u64, |v, (i, &b)| {
                let sign = if at + i == 0 { 0x80 } else { 0 };
                v << 8 | u64::from(b ^ invert ^ sign)
            });
        at += DIG2BYTES[digits];
        if v >= POW10[digits] {
            return Err(DecodeError::Invalid(format!(
                "decimal digit group {v} has more than {digits} digits"
            )));
        }
        Ok(v)
    };
    // Digits go into a stack buffer (65 at most), then the text into one exact allocation.
    let mut digits = [0u8; 65];
    let mut n = 0;
    let mut push = |v: u64, width: usize| {
        let mut v = v;
        for d in digits[n..n + width].iter_mut().rev() {
            *d = b'0' + (v % 10) as u8;
            v /= 10;
        }
        n += width;
    };
    if intg0x > 0 {
        push(group(intg0x)?, intg0x);
    }
    for _ in 0..intg0 {
        push(group(9)?, 9);
    }
    for _ in 0..frac0 {
        push(group(9)?, 9);
    }
    if frac0x > 0 {
        push(group(frac0x)?, frac0x);
    }
    let (int_digits, frac_digits) = digits[..n].split_at(intg);
    let first = int_digits
        .iter()
        .position(|&d| d != b'0')
        .unwrap_or(int_digits.len());
    let int_digits = &int_digits[first..];
    let zero = int_digits.is_empty() && frac_digits.iter().all(|&d| d == b'0');
    let mut text = [0u8; 68]; // sign, 65 digits, point, and a 0 before a point
    let mut len = 0;
    let mut put = |bytes: &[u8]| {
        text[len..len + bytes.len()].copy_from_slice(bytes);
        len += bytes.len();
    };
    if negative && !zero {
        put(b"-");
    }
    put(if int_digits.is_empty() {
        b"0"
    } else {
        int_digits
    });
    if frac > 0 {
        put(b".");
        put(frac_digits);
    }
    Ok(crate::model::utf8(&text[..len])
        .expect("a decimal's text is ASCII")
        .to_owned())
}
