//! A scale: how many rows of each kind it seeds, what it is called, and what it needs on disk
//! and in memory.
use std::fmt;

use enrollment_svc::seed::Plan;

/// Scale 1 = 10k courses, 100k users, 1M enrollments, 3M lesson-progress rows, 1M submissions.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Scale(f64);

/// Largest scale accepted at all (the disk and memory checks usually stop one earlier).
const MAX_SCALE: f64 = 100.0;

// Bytes per row on Postgres with every index, plus the WAL written while loading and building
// indexes, rounded up from Postgres 15: the two databases take 1.1 GiB at scale 1, 119 MiB at 0.1.
const COURSE_BYTES: u64 = 12_000; // the course, ~5.5 lessons and ~8 exercises
const USER_BYTES: u64 = 400;
const ENROLLMENT_BYTES: u64 = 320;
const PROGRESS_BYTES: u64 = 230;
const SUBMISSION_BYTES: u64 = 300;
/// WAL and the temporary files of index builds, on top of the tables.
const WRITE_OVERHEAD: f64 = 1.5;

impl Scale {
    pub fn new(value: f64) -> Result<Self, String> {
        if !value.is_finite() || value <= 0.0 {
            return Err(format!("scale must be a positive number, got {value}"));
        }
        if value > MAX_SCALE {
            return Err(format!("scale must be at most {MAX_SCALE}, got {value}"));
        }
        let scale = Self(value);
        if scale.courses() == 0 || scale.plan().users == 0 {
            return Err(format!(
                "scale {value} is too small: it would seed no course or no user"
            ));
        }
        Ok(scale)
    }

    pub fn value(self) -> f64 {
        self.0
    }

    fn times(self, base: u64) -> u64 {
        (base as f64 * self.0).round() as u64
    }

    pub fn courses(self) -> u64 {
        self.times(10_000)
    }

    pub fn plan(self) -> Plan {
        Plan {
            users: self.times(100_000),
            enrollments: self.times(1_000_000),
            progress: self.times(3_000_000),
            submissions: self.times(1_000_000),
        }
    }

    /// `1`, `0.1`, `0.25`: how files name it.
    pub fn label(self) -> String {
        let text = format!("{}", self.0);
        text.trim_end_matches(".0").to_owned()
    }

    /// `1`, `0_1`: how database names carry it.
    pub fn db_suffix(self) -> String {
        self.label().replace('.', "_")
    }

    /// Disk the seeded databases need (bytes), WAL and index builds included.
    pub fn disk_need(self) -> u64 {
        let plan = self.plan();
        let rows = self.courses() * COURSE_BYTES
            + plan.users * USER_BYTES
            + plan.enrollments * ENROLLMENT_BYTES
            + plan.progress * PROGRESS_BYTES
            + plan.submissions * SUBMISSION_BYTES;
        (rows as f64 * WRITE_OVERHEAD) as u64
    }

    /// Memory the run needs besides what Postgres and Redis already use (bytes): the services
    /// and the load generator in this process, the seed's working set, the cached pages.
    pub fn memory_need(self) -> u64 {
        let base: u64 = 384 << 20;
        base + self.times(256 << 20)
    }
}

impl fmt::Display for Scale {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.label())
    }
}

/// Bytes as `1.2 GiB`.
pub fn human_bytes(bytes: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut value = bytes as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit < UNITS.len() - 1 {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{bytes} B")
    } else {
        format!("{value:.1} {}", UNITS[unit])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scale_one_is_the_issue_s_sizes() {
        let one = Scale::new(1.0).unwrap();
        assert_eq!(one.courses(), 10_000);
        let plan = one.plan();
        assert_eq!(
            (
                plan.users,
                plan.enrollments,
                plan.progress,
                plan.submissions
            ),
            (100_000, 1_000_000, 3_000_000, 1_000_000)
        );
        assert_eq!(one.label(), "1");
        assert_eq!(one.db_suffix(), "1");
    }

    #[test]
    fn a_tenth_is_named_with_an_underscore_in_databases() {
        let tenth = Scale::new(0.1).unwrap();
        assert_eq!(tenth.courses(), 1_000);
        assert_eq!(tenth.plan().enrollments, 100_000);
        assert_eq!(tenth.label(), "0.1");
        assert_eq!(tenth.db_suffix(), "0_1");
    }

    #[test]
    fn bad_scales_are_refused_with_a_reason() {
        for bad in [0.0, -1.0, f64::NAN, f64::INFINITY, 1e6, 1e-7] {
            let err = Scale::new(bad).unwrap_err();
            assert!(err.contains("scale"), "{err}");
        }
    }

    #[test]
    fn needs_grow_with_the_scale() {
        let (small, big) = (Scale::new(0.1).unwrap(), Scale::new(1.0).unwrap());
        assert!(big.disk_need() > 9 * small.disk_need());
        assert!(big.disk_need() > 1 << 30, "scale 1 needs more than 1 GiB");
        assert!(big.memory_need() > small.memory_need());
        assert_eq!(human_bytes(512), "512 B");
        assert_eq!(human_bytes(3 << 29), "1.5 GiB");
    }
}
