//! Time as seconds since the Unix epoch, and conversions to and from X.509 `Time`.

use crate::{PkiError, Result};
use der::DateTime;
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use x509_cert::time::Time;

/// Seconds since 1970-01-01T00:00:00Z. Signed so that dates before 1970 in odd
/// certificates do not wrap.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize, serde::Deserialize)]
pub struct UnixTime(pub i64);

/// One day in seconds.
pub const DAY: i64 = 86_400;

impl UnixTime {
    /// The current time.
    pub fn now() -> Self {
        UnixTime(SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs() as i64).unwrap_or(0))
    }

    /// `self + days`.
    pub fn plus_days(self, days: i64) -> Self {
        UnixTime(self.0 + days * DAY)
    }

    /// From an X.509 `Time`.
    pub fn from_x509(t: &Time) -> Self {
        UnixTime(t.to_unix_duration().as_secs() as i64)
    }

    /// To an X.509 `Time`: UTCTime through 2049, GeneralizedTime from 2050 (RFC 5280 §4.1.2.5).
    pub fn to_x509(self) -> Result<Time> {
        let secs = u64::try_from(self.0).map_err(|_| PkiError::CertificateMalformed("time before 1970".into()))?;
        let dt = DateTime::from_unix_duration(Duration::from_secs(secs))
            .map_err(|e| PkiError::CertificateMalformed(format!("time out of range: {e}")))?;
        if dt.year() < 2050 {
            der::asn1::UtcTime::from_date_time(dt).map(Time::UtcTime)
        } else {
            Ok(Time::GeneralTime(der::asn1::GeneralizedTime::from_date_time(dt)))
        }
        .map_err(|e| PkiError::CertificateMalformed(format!("time: {e}")))
    }

    /// RFC 3339 (`2026-11-22T08:00:00Z`).
    pub fn to_rfc3339(self) -> String {
        match u64::try_from(self.0).ok().and_then(|s| DateTime::from_unix_duration(Duration::from_secs(s)).ok()) {
            Some(dt) => format!(
                "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}Z",
                dt.year(),
                dt.month(),
                dt.day(),
                dt.hour(),
                dt.minutes(),
                dt.seconds()
            ),
            None => format!("@{}", self.0),
        }
    }
}

impl std::fmt::Display for UnixTime {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.to_rfc3339())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_both_time_types() {
        for t in [UnixTime(0), UnixTime(1_795_000_000), UnixTime(2_600_000_000), UnixTime(4_102_444_800)] {
            let x = t.to_x509().unwrap_or_else(|e| panic!("{e}"));
            assert_eq!(UnixTime::from_x509(&x), t);
            assert_eq!(matches!(x, Time::GeneralTime(_)), t.0 >= 2_524_608_000);
        }
        assert_eq!(UnixTime(1_795_000_000).to_rfc3339(), "2026-11-18T11:06:40Z");
        assert!(UnixTime(-1).to_x509().is_err());
    }
}
