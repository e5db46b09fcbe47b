//! Conversions between stored UTC timestamps and `google.protobuf.Timestamp`.
use chrono::{DateTime, NaiveDateTime, Utc};
use prost_types::Timestamp;

/// Now, in UTC, at microsecond precision (what both Postgres and our SQLite columns keep).
pub fn now() -> NaiveDateTime {
    let now = Utc::now().naive_utc();
    now.with_nanosecond_micros()
}

trait MicrosPrecision {
    fn with_nanosecond_micros(self) -> Self;
}

impl MicrosPrecision for NaiveDateTime {
    fn with_nanosecond_micros(self) -> Self {
        use chrono::Timelike;
        let nanos = self.nanosecond() / 1_000 * 1_000;
        self.with_nanosecond(nanos).unwrap_or(self)
    }
}

pub fn to_timestamp(at: NaiveDateTime) -> Timestamp {
    let utc = at.and_utc();
    Timestamp {
        seconds: utc.timestamp(),
        nanos: utc.timestamp_subsec_nanos() as i32,
    }
}

/// `None` when the timestamp is out of chrono's range or its nanos are invalid.
pub fn from_timestamp(ts: &Timestamp) -> Option<NaiveDateTime> {
    let nanos = u32::try_from(ts.nanos).ok()?;
    DateTime::<Utc>::from_timestamp(ts.seconds, nanos).map(|at| at.naive_utc())
}
