//! Retrying a device that failed to open. Opening (context, stream, module, pinned buffers) can
//! fail for passing reasons, such as running out of device memory while another process holds it;
//! remembering that failure for the life of the process would disable the GPU until exit while
//! the status still called it available. A failed open is instead retried after a backoff (1 s,
//! doubling, at most 60 s); calls in between fail at once (and compute on the CPU) without
//! touching the driver, and the status shows the failure and when the next try is due.
//!
//! The clock is a parameter of [`get_or_open_at`], so the policy is tested without a GPU.

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::time::{Duration, Instant, SystemTime};

use super::error::GpuError;

/// The wait after the first failure; each further failure doubles it, up to [`MAX_BACKOFF`].
pub const FIRST_BACKOFF: Duration = Duration::from_secs(1);
pub const MAX_BACKOFF: Duration = Duration::from_secs(60);

/// A failed open and when to try again.
#[derive(Debug, Clone)]
pub struct OpenFailure {
    pub error: GpuError,
    /// Consecutive failed opens (1 after the first).
    pub attempts: u32,
    failed_at: Instant,
    wall: SystemTime,
}

impl OpenFailure {
    pub fn backoff(&self) -> Duration {
        backoff(self.attempts)
    }

    fn retry_at(&self) -> Instant {
        self.failed_at + self.backoff()
    }

    /// The status's line: "open failed at <UTC time>: <error>; retrying after <s> s".
    pub fn describe(&self) -> String {
        format!(
            "open failed at {}: {}; retrying after {} s (failure {})",
            utc(self.wall),
            self.error,
            self.backoff().as_secs(),
            self.attempts
        )
    }
}

/// The wait after `attempts` consecutive failures.
pub fn backoff(attempts: u32) -> Duration {
    let doublings = attempts.saturating_sub(1).min(31);
    FIRST_BACKOFF
        .checked_mul(1u32 << doublings)
        .unwrap_or(MAX_BACKOFF)
        .min(MAX_BACKOFF)
}

/// A device's state: not opened yet, open, or failed (and when to retry).
pub type Slot<D> = Option<Result<D, OpenFailure>>;

/// The open device in `slot`, opening it with `open` if it never was, or if its last failure's
/// backoff has passed at `now`; before that, the last failure's error. `wall` timestamps a new
/// failure for the status.
pub fn get_or_open_at<D>(
    slot: &mut Slot<D>,
    now: Instant,
    wall: SystemTime,
    open: impl FnOnce() -> Result<D, GpuError>,
) -> Result<&mut D, GpuError> {
    let attempts = match slot {
        Some(Ok(_)) => 0,
        Some(Err(f)) if now < f.retry_at() => return Err(f.error.clone()),
        Some(Err(f)) => f.attempts,
        None => 0,
    };
    if !matches!(slot, Some(Ok(_))) {
        *slot = Some(match open() {
            Ok(dev) => Ok(dev),
            Err(error) => Err(OpenFailure {
                error,
                attempts: attempts + 1,
                failed_at: now,
                wall,
            }),
        });
    }
    match slot {
        Some(Ok(dev)) => Ok(dev),
        Some(Err(f)) => Err(f.error.clone()),
        None => Err(GpuError::Unavailable("device slot left empty".into())),
    }
}

/// Each real GPU's failed open, by ordinal, for the status (cleared once it opens).
static STATES: Mutex<BTreeMap<usize, String>> = Mutex::new(BTreeMap::new());

/// [`get_or_open_at`] with the real clock, recording GPU `index`'s state for [`state`].
pub fn get_or_open<D>(
    index: usize,
    slot: &mut Slot<D>,
    open: impl FnOnce() -> Result<D, GpuError>,
) -> Result<&mut D, GpuError> {
    if !matches!(slot, Some(Ok(_))) {
        // Open (or stay in the backoff) first, then record the outcome for the status.
        let tried = get_or_open_at(slot, Instant::now(), SystemTime::now(), open).map(|_| ());
        let line = match slot {
            Some(Err(f)) => Some(f.describe()),
            _ => None,
        };
        if let Ok(mut states) = STATES.lock() {
            match line {
                Some(l) => states.insert(index, l),
                None => states.remove(&index),
            };
        }
        tried?;
    }
    get_or_open_at(slot, Instant::now(), SystemTime::now(), || {
        Err(GpuError::Unavailable("device opened twice".into()))
    })
}

/// GPU `index`'s failed open, if it is waiting to be retried.
pub fn state(index: usize) -> Option<String> {
    STATES.lock().ok()?.get(&index).cloned()
}

/// `YYYY-MM-DD HH:MM:SS UTC` (the civil-from-days conversion, proleptic Gregorian calendar).
fn utc(t: SystemTime) -> String {
    let secs = t
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs()) as i64;
    let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02} {:02}:{:02}:{:02} UTC",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::cell::Cell;

    fn oom() -> GpuError {
        GpuError::Driver {
            call: "cuCtx (primary context)",
            detail: "CUDA_ERROR_OUT_OF_MEMORY".into(),
        }
    }

    #[test]
    fn a_failed_open_is_retried_after_the_backoff_and_not_before() {
        let t0 = Instant::now();
        let wall = SystemTime::UNIX_EPOCH + Duration::from_secs(1_764_684_629);
        let opens = Cell::new(0);
        let failing = || {
            opens.set(opens.get() + 1);
            Err::<u32, _>(oom())
        };
        let mut slot: Slot<u32> = None;
        assert_eq!(get_or_open_at(&mut slot, t0, wall, failing), Err(oom()));
        assert_eq!(opens.get(), 1);
        // Within the first second: the remembered error, and the driver is not asked.
        let soon = t0 + Duration::from_millis(999);
        assert_eq!(get_or_open_at(&mut slot, soon, wall, failing), Err(oom()));
        assert_eq!(opens.get(), 1);
        // After it: tried again; it fails again, so the next wait is 2 s.
        let t1 = t0 + Duration::from_secs(1);
        assert!(get_or_open_at(&mut slot, t1, wall, failing).is_err());
        assert_eq!(opens.get(), 2);
        let before = t1 + Duration::from_millis(1999);
        assert!(get_or_open_at(&mut slot, before, wall, failing).is_err());
        assert_eq!(opens.get(), 2);
        let line = match &slot {
            Some(Err(f)) => f.describe(),
            _ => panic!("the slot holds the failure"),
        };
        assert_eq!(
            line,
            "open failed at 2025-12-02 14:10:29 UTC: cuCtx (primary context): \
             CUDA_ERROR_OUT_OF_MEMORY; retrying after 2 s (failure 2)"
        );
        // Once the memory is back, the next try after the backoff opens the device for good.
        let t2 = t1 + Duration::from_secs(2);
        assert_eq!(get_or_open_at(&mut slot, t2, wall, || Ok(7)), Ok(&mut 7));
        let later = t2 + Duration::from_secs(1);
        let opened_again = || -> Result<u32, GpuError> { panic!("an open device is not reopened") };
        assert_eq!(
            get_or_open_at(&mut slot, later, wall, opened_again),
            Ok(&mut 7)
        );
    }

    #[test]
    fn the_backoff_doubles_and_is_capped() {
        let waits: Vec<u64> = (1..=9).map(|n| backoff(n).as_secs()).collect();
        assert_eq!(waits, [1, 2, 4, 8, 16, 32, 60, 60, 60]);
        assert_eq!(backoff(u32::MAX), MAX_BACKOFF);
    }

    #[test]
    fn the_status_line_is_kept_while_failing_and_cleared_once_open() {
        // An ordinal no real test machine has, so the process-wide table is not shared.
        let index = 10_001;
        let mut slot: Slot<u32> = None;
        assert!(get_or_open(index, &mut slot, || Err(oom())).is_err());
        let line = state(index).expect("the failure is reported");
        assert!(line.starts_with("open failed at "), "{line}");
        assert!(
            line.contains("CUDA_ERROR_OUT_OF_MEMORY; retrying after 1 s"),
            "{line}"
        );
        // Pretend the backoff has passed, then open successfully: the line goes away.
        if let Some(Err(f)) = &mut slot {
            f.failed_at -= Duration::from_secs(5);
        }
        assert_eq!(get_or_open(index, &mut slot, || Ok(1)), Ok(&mut 1));
        assert_eq!(state(index), None);
    }

    #[test]
    fn utc_times_are_calendar_dates() {
        assert_eq!(utc(SystemTime::UNIX_EPOCH), "1970-01-01 00:00:00 UTC");
        let leap = SystemTime::UNIX_EPOCH + Duration::from_secs(951_782_400 + 3_723);
        assert_eq!(utc(leap), "2000-02-29 01:02:03 UTC");
    }
}
