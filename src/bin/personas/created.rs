//! The `created` header value: a TOML date or date-time turned into the Unix seconds that a
//! persona record and `/v1/models` carry.

use toml::value::{Date, Datetime, Offset};

const SECONDS_PER_DAY: i64 = 86_400;

/// Unix seconds for a TOML date (00:00 UTC that day), a local date-time (read as UTC) or an
/// offset date-time (moved to UTC by its offset).
///
/// # Errors
/// The rule broken, in words, when the value is a time with no date.
pub fn parse_created(value: &Datetime) -> Result<i64, String> {
    let Some(date) = value.date else {
        return Err("must be a date such as 2026-01-15; a time alone names no day".to_owned());
    };
    let mut seconds = days_from_civil(date) * SECONDS_PER_DAY;

    if let Some(time) = value.time {
        seconds +=
            i64::from(time.hour) * 3_600 + i64::from(time.minute) * 60 + i64::from(time.second);
    }
    if let Some(Offset::Custom { minutes }) = value.offset {
        seconds -= i64::from(minutes) * 60;
    }
    Ok(seconds)
}

/// Days from 1970-01-01 to `date` in the proleptic Gregorian calendar; negative before 1970.
pub fn days_from_civil(date: Date) -> i64 {
    let year = i64::from(date.year);
    let leap = is_leap_year(year);
    let month_days: i64 = (1..date.month).map(|month| days_in_month(month, leap)).sum();

    days_before_year(year) - days_before_year(1970) + month_days + i64::from(date.day) - 1
}

/// Days from the start of year 0 to the first day of `year`.
fn days_before_year(year: i64) -> i64 {
    let previous = year - 1;
    365 * year + previous.div_euclid(4) - previous.div_euclid(100) + previous.div_euclid(400) + 1
}

fn is_leap_year(year: i64) -> bool {
    year % 4 == 0 && (year % 100 != 0 || year % 400 == 0)
}

fn days_in_month(month: u8, leap: bool) -> i64 {
    match month {
        2 if leap => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn created(text: &str) -> Result<i64, String> {
        let value: Datetime = text.parse().map_err(|error| format!("{error}"))?;
        parse_created(&value)
    }

    #[test]
    fn dates_are_midnight_utc() {
        let cases = [
            ("1970-01-01", 0),
            ("1970-01-02", 86_400),
            ("1969-12-31", -86_400),
            ("2000-02-29", 951_782_400),
            ("2000-03-01", 951_868_800),
            ("2024-02-29", 1_709_164_800),
            ("2024-03-01", 1_709_251_200),
            ("2026-01-15", 1_768_435_200),
            ("2100-03-01", 4_107_542_400),
        ];
        for (text, seconds) in cases {
            assert_eq!(created(text), Ok(seconds), "{text}");
        }
    }

    #[test]
    fn date_times_count_their_time_and_offset() {
        assert_eq!(created("2026-01-15T12:30:05Z"), Ok(1_768_435_200 + 45_005));
        assert_eq!(created("2026-01-15T12:30:05"), Ok(1_768_435_200 + 45_005));
        assert_eq!(created("2026-01-15T02:00:00+02:00"), Ok(1_768_435_200));
        assert_eq!(created("2026-01-14T22:00:00-02:00"), Ok(1_768_435_200));
    }

    #[test]
    fn a_time_alone_is_refused() {
        assert!(created("12:30:00").is_err_and(|reason| reason.contains("date")));
    }
}
