//! Timestamps as the contract writes them: RFC 3339, UTC, exactly three fractional digits, `Z`.

use chrono::{DateTime, SecondsFormat, Utc};

/// `2025-10-12T03:41:49.123Z`
pub fn format_ts(ts: &DateTime<Utc>) -> String {
    ts.to_rfc3339_opts(SecondsFormat::Millis, true)
}

/// Serde adapter for `DateTime<Utc>` fields.
pub mod ts {
    use chrono::{DateTime, Utc};
    use serde::Serializer;

    pub fn serialize<S: Serializer>(ts: &DateTime<Utc>, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&super::format_ts(ts))
    }
}

/// Serde adapter for `Option<DateTime<Utc>>` fields (always present, `null` when absent).
pub mod ts_opt {
    use chrono::{DateTime, Utc};
    use serde::Serializer;

    pub fn serialize<S: Serializer>(ts: &Option<DateTime<Utc>>, s: S) -> Result<S::Ok, S::Error> {
        match ts {
            Some(ts) => s.serialize_str(&super::format_ts(ts)),
            None => s.serialize_none(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    #[test]
    fn timestamps_have_three_fraction_digits_and_z() {
        let ts = Utc.with_ymd_and_hms(2025, 10, 12, 3, 41, 49).single().expect("valid date");
        assert_eq!(format_ts(&ts), "2025-10-12T03:41:49.000Z");
        let ts = ts + chrono::Duration::microseconds(123_456);
        assert_eq!(format_ts(&ts), "2025-10-12T03:41:49.123Z");
    }
}
