//! UTC timestamps with millisecond precision.
//!
//! NGSI-LD's `observedAt` is an ISO 8601 / RFC 3339 date-time in UTC. Polity keeps every
//! time as whole milliseconds since the Unix epoch so that values sort, compare and
//! serialize without loss, and always prints them as `YYYY-MM-DDThh:mm:ss.sssZ`.

use std::fmt;

use chrono::{DateTime, SecondsFormat, TimeZone, Utc};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// A UTC instant, in milliseconds since 1970-01-01T00:00:00Z.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Timestamp(i64);

/// The text was not an RFC 3339 date-time.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("`{input}` is not an RFC 3339 date-time such as 2026-11-25T01:10:36.123Z: {reason}")]
pub struct TimestampError {
    input: String,
    reason: String,
}

/// How far after the time of receipt an observation may be stamped: 10 minutes of
/// device clock skew. Later stamps are rejected, because entity state keeps the latest
/// observation and one device with a clock in the future would otherwise freeze it.
pub const MAX_FUTURE_SKEW_MS: i64 = 10 * 60 * 1000;

/// Earliest instant accepted: 0001-01-01T00:00:00Z.
pub const MIN_MS: i64 = -62_135_596_800_000;
/// Latest instant accepted: 9999-12-31T23:59:59.999Z.
pub const MAX_MS: i64 = 253_402_300_799_999;

impl Timestamp {
    /// The instant `ms` milliseconds after the epoch, clamped to years 1..=9999.
    pub const fn from_millis(ms: i64) -> Self {
        let ms = if ms < MIN_MS {
            MIN_MS
        } else if ms > MAX_MS {
            MAX_MS
        } else {
            ms
        };
        Timestamp(ms)
    }

    /// Seconds since the epoch, with a fractional part (as SenML times are).
    /// Sub-millisecond precision is rounded away; non-finite input gives `None`.
    pub fn from_secs_f64(secs: f64) -> Option<Self> {
        if !secs.is_finite() {
            return None;
        }
        let ms = (secs * 1000.0).round();
        if ms < MIN_MS as f64 || ms > MAX_MS as f64 {
            return None;
        }
        Some(Timestamp(ms as i64))
    }

    /// Milliseconds since the epoch.
    pub const fn as_millis(self) -> i64 {
        self.0
    }

    /// Seconds since the epoch, as SenML carries time.
    pub fn as_secs_f64(self) -> f64 {
        self.0 as f64 / 1000.0
    }

    /// The current instant from the system clock.
    pub fn now() -> Self {
        Timestamp::from_millis(Utc::now().timestamp_millis())
    }

    /// Parses an RFC 3339 date-time with any offset; the result is in UTC.
    pub fn parse(s: &str) -> Result<Self, TimestampError> {
        DateTime::parse_from_rfc3339(s.trim())
            .map(|dt| Timestamp::from_millis(dt.timestamp_millis()))
            .map_err(|e| TimestampError {
                input: s.chars().take(64).collect(),
                reason: e.to_string(),
            })
    }

    fn to_datetime(self) -> DateTime<Utc> {
        // In range by construction, so `single()` always succeeds.
        Utc.timestamp_millis_opt(self.0)
            .single()
            .unwrap_or(DateTime::<Utc>::MIN_UTC)
    }
}

impl fmt::Display for Timestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Whole seconds without a fraction (`2020-08-01T12:03:00Z`), otherwise the
        // milliseconds: clients (and the ETSI suite) compare these strings exactly.
        f.write_str(
            &self
                .to_datetime()
                .to_rfc3339_opts(SecondsFormat::AutoSi, true),
        )
    }
}

impl std::str::FromStr for Timestamp {
    type Err = TimestampError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Timestamp::parse(s)
    }
}

impl Serialize for Timestamp {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Timestamp {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        Timestamp::parse(&s).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn prints_utc_with_millis() {
        let t = Timestamp::parse("2026-11-25T11:40:36.5+10:30").unwrap();
        assert_eq!(t.to_string(), "2026-11-25T01:10:36.500Z");
    }

    #[test]
    fn rejects_garbage_with_a_useful_message() {
        let e = Timestamp::parse("yesterday").unwrap_err();
        assert!(e.to_string().contains("RFC 3339"), "{e}");
    }

    #[test]
    fn senml_seconds_round_to_millis() {
        let t = Timestamp::from_secs_f64(1_320_067_464.000_4).unwrap();
        assert_eq!(t.as_millis(), 1_320_067_464_000);
        assert!(Timestamp::from_secs_f64(f64::NAN).is_none());
    }

    proptest! {
        #[test]
        fn text_round_trip(ms in MIN_MS..=MAX_MS) {
            let t = Timestamp::from_millis(ms);
            prop_assert_eq!(Timestamp::parse(&t.to_string()).unwrap(), t);
        }

        #[test]
        fn json_round_trip(ms in MIN_MS..=MAX_MS) {
            let t = Timestamp::from_millis(ms);
            let j = serde_json::to_string(&t).unwrap();
            prop_assert_eq!(serde_json::from_str::<Timestamp>(&j).unwrap(), t);
        }
    }
}
