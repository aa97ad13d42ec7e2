//! Calendar arithmetic for the temporal values that cross the pipeline.
//!
//! Values travel as days or microseconds since 1970-01-01 (Avro's `date` and `*-micros`
//! logical types), so the binlog decoder, the snapshot reader and the loader all need the same
//! proleptic Gregorian conversions. They are Howard Hinnant's `days_from_civil` and
//! `civil_from_days`, exact for every year MySQL can store.

/// Wall-clock milliseconds since the epoch, for `ts_ms` fields.
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

/// Microseconds in one day.
pub const MICROS_PER_DAY: i64 = 86_400_000_000;

/// Whether `year-month-day` names a real calendar day. MySQL can store zero dates and, with
/// `ALLOW_INVALID_DATES`, days like February 31st; neither has a place on the timeline.
pub fn is_valid_date(year: u32, month: u32, day: u32) -> bool {
    if !(1..=12).contains(&month) || day == 0 || year > 9999 {
        return false;
    }
    let leap = year.is_multiple_of(4) && (!year.is_multiple_of(100) || year.is_multiple_of(400));
    let days_in_month = match month {
        2 if leap => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    };
    day <= days_in_month
}

/// Days since 1970-01-01 of a valid date (see [`is_valid_date`]).
pub fn days_from_civil(year: u32, month: u32, day: u32) -> i32 {
    let y = i64::from(year) - i64::from(month <= 2);
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let m = i64::from(month);
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + i64::from(day) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    // Years 0..=9999 keep this well inside i32.
    (era * 146_097 + doe - 719_468) as i32
}

/// The `(year, month, day)` of a day count since 1970-01-01.
pub fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

/// Microseconds since 1970-01-01T00:00:00 of a valid date and wall-clock time.
pub fn micros_from_civil(
    year: u32,
    month: u32,
    day: u32,
    hour: u32,
    minute: u32,
    second: u32,
    micros: u32,
) -> i64 {
    let seconds = i64::from(hour) * 3600 + i64::from(minute) * 60 + i64::from(second);
    i64::from(days_from_civil(year, month, day)) * MICROS_PER_DAY
        + seconds * 1_000_000
        + i64::from(micros)
}

/// ISO-8601 date, `YYYY-MM-DD`.
pub fn format_date(days: i64) -> String {
    let mut out = Vec::with_capacity(10);
    push_date(&mut out, days);
    String::from_utf8(out).expect("dates are ASCII")
}

/// ISO-8601 date and time with microseconds, `YYYY-MM-DDTHH:MM:SS.ffffff`, no zone.
pub fn format_datetime_micros(micros: i64) -> String {
    let mut out = Vec::with_capacity(26);
    push_datetime_micros(&mut out, micros);
    String::from_utf8(out).expect("dates are ASCII")
}

/// Appends [`format_date`]'s text to `out` (the loader writes documents without a `String`
/// per value).
pub fn push_date(out: &mut Vec<u8>, days: i64) {
    let (y, m, d) = civil_from_days(days);
    push_year(out, y);
    out.push(b'-');
    push_digits(out, m, 2);
    out.push(b'-');
    push_digits(out, d, 2);
}

/// Appends [`format_datetime_micros`]'s text to `out`.
pub fn push_datetime_micros(out: &mut Vec<u8>, micros: i64) {
    push_date(out, micros.div_euclid(MICROS_PER_DAY));
    let in_day = micros.rem_euclid(MICROS_PER_DAY);
    let secs = (in_day / 1_000_000) as u32;
    out.push(b'T');
    push_digits(out, secs / 3600, 2);
    out.push(b':');
    push_digits(out, secs / 60 % 60, 2);
    out.push(b':');
    push_digits(out, secs % 60, 2);
    out.push(b'.');
    push_digits(out, (in_day % 1_000_000) as u32, 6);
}

/// A year as `{:04}` prints it: years outside MySQL's range keep their sign and every digit.
fn push_year(out: &mut Vec<u8>, year: i64) {
    match u32::try_from(year) {
        Ok(y) if y <= 9999 => push_digits(out, y, 4),
        _ => {
            use std::io::Write as _;
            write!(out, "{year:04}").expect("writing to a Vec cannot fail");
        }
    }
}

/// `n` in decimal, zero-padded to `width` digits (`n` has at most `width` digits).
fn push_digits(out: &mut Vec<u8>, mut n: u32, width: usize) {
    let start = out.len();
    out.resize(start + width, b'0');
    let mut end = start + width;
    while end >= start + 2 {
        let pair = (n % 100) as usize * 2;
        out[end - 2..end].copy_from_slice(&PAIRS[pair..pair + 2]);
        n /= 100;
        end -= 2;
    }
    if end > start {
        out[start] = b'0' + (n % 10) as u8;
    }
}

/// "00" to "99": two digits per division.
static PAIRS: [u8; 200] = {
    let mut pairs = [0u8; 200];
    let mut i = 0;
    while i < 100 {
        pairs[2 * i] = b'0' + (i / 10) as u8;
        pairs[2 * i + 1] = b'0' + (i % 10) as u8;
        i += 1;
    }
    pairs
};

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn written_dates_read_as_format_prints_them() {
        let mut rng = fastrand::Rng::with_seed(20261130);
        for _ in 0..20000 {
            let micros = match rng.u8(..4) {
                0 => rng.i64(..),
                _ => rng.i64(-62_135_596_800_000_000..253_402_300_800_000_000),
            };
            let days = micros.div_euclid(MICROS_PER_DAY);
            let in_day = micros.rem_euclid(MICROS_PER_DAY);
            let (y, m, d) = civil_from_days(days);
            let secs = in_day / 1_000_000;
            let expected = format!(
                "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{:06}",
                secs / 3600,
                secs / 60 % 60,
                secs % 60,
                in_day % 1_000_000
            );
            assert_eq!(format_datetime_micros(micros), expected, "{micros}");
            assert_eq!(format_date(days), format!("{y:04}-{m:02}-{d:02}"), "{days}");
        }
    }

    #[test]
    fn round_trips_every_day_of_the_mysql_range() {
        let mut expected = days_from_civil(1000, 1, 1);
        for year in 1000..=9999 {
            for month in 1..=12 {
                for day in 1..=31 {
                    if !is_valid_date(year, month, day) {
                        continue;
                    }
                    let days = days_from_civil(year, month, day);
                    assert_eq!(days, expected, "{year}-{month}-{day}");
                    assert_eq!(civil_from_days(days.into()), (year.into(), month, day));
                    expected += 1;
                }
            }
        }
    }

    #[test]
    fn known_dates() {
        assert_eq!(days_from_civil(1970, 1, 1), 0);
        assert_eq!(days_from_civil(2000, 3, 1), 11_017);
        assert_eq!(days_from_civil(1, 1, 1), -719_162);
        assert_eq!(format_date(-1), "1969-12-31");
    }

    #[test]
    fn rejects_impossible_dates() {
        assert!(!is_valid_date(2023, 2, 29));
        assert!(is_valid_date(2024, 2, 29));
        assert!(!is_valid_date(1900, 2, 29));
        assert!(is_valid_date(2000, 2, 29));
        assert!(!is_valid_date(2024, 0, 1));
        assert!(!is_valid_date(2024, 1, 0));
        assert!(!is_valid_date(2024, 4, 31));
    }

    #[test]
    fn formats_microseconds() {
        let us = micros_from_civil(2024, 2, 29, 23, 59, 58, 123_456);
        assert_eq!(format_datetime_micros(us), "2024-02-29T23:59:58.123456");
        let before_epoch = micros_from_civil(1969, 12, 31, 23, 59, 59, 1);
        assert_eq!(before_epoch, -999_999);
        assert_eq!(
            format_datetime_micros(before_epoch),
            "1969-12-31T23:59:59.000001"
        );
    }
}
