//! The one retry policy of the runtime: every retry loop (failing event
//! handlers, store outages in the retry layer, conflicts between
//! processes, a command id claimed elsewhere) waits by it.

use std::time::Duration;

use backon::{BackoffBuilder, ExponentialBuilder};

/// Runs and waits of a retried operation: up to `max_attempts` runs, the
/// wait doubling from `initial` up to `max`, each wait with random jitter
/// (up to the wait again) so that retrying callers spread out.
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// use interlock::Backoff;
///
/// let policy = Backoff::new(4, Duration::from_millis(10), Duration::from_millis(25)).without_jitter();
/// let waits: Vec<_> = policy.delays().collect();
/// assert_eq!(waits, [10, 20, 25].map(Duration::from_millis));
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Backoff {
    /// Runs in all, the first included (at least 1).
    pub max_attempts: u32,
    /// The wait after the first failure.
    pub initial: Duration,
    /// The longest wait (jitter included).
    pub max: Duration,
    /// Whether each wait gets random jitter.
    pub jitter: bool,
}

impl Backoff {
    /// `max_attempts` runs, waits from `initial` doubling up to `max`, with jitter.
    #[must_use]
    pub const fn new(max_attempts: u32, initial: Duration, max: Duration) -> Self {
        Self {
            max_attempts,
            initial,
            max,
            jitter: true,
        }
    }

    /// The same policy without jitter (deterministic waits).
    #[must_use]
    pub const fn without_jitter(mut self) -> Self {
        self.jitter = false;
        self
    }

    /// The waits between runs: `max_attempts - 1` of them.
    pub fn delays(&self) -> impl Iterator<Item = Duration> + Send + 'static {
        let retries = usize::try_from(self.max_attempts.saturating_sub(1)).unwrap_or(usize::MAX);
        let max = self.max;
        let mut builder = ExponentialBuilder::new()
            .with_min_delay(self.initial)
            .with_max_delay(max)
            .with_factor(2.0)
            .with_max_times(retries);
        if self.jitter {
            builder = builder.with_jitter();
        }
        // backon adds the jitter on top of the capped wait: cap it again.
        builder.build().map(move |d| d.min(max)).take(retries)
    }
}

impl Default for Backoff {
    /// 5 runs, waits from 50 ms up to 5 s, with jitter.
    fn default() -> Self {
        Self::new(5, Duration::from_millis(50), Duration::from_secs(5))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jittered_waits_stay_within_the_cap_and_vary() {
        let policy = Backoff::new(50, Duration::from_millis(1), Duration::from_millis(8));
        let waits: Vec<_> = policy.delays().collect();
        assert_eq!(waits.len(), 49);
        assert!(
            waits
                .iter()
                .all(|d| *d >= Duration::from_millis(1) && *d <= Duration::from_millis(8))
        );
        let other: Vec<_> = policy.delays().collect();
        assert_ne!(waits, other, "jitter makes two runs differ");
        assert_eq!(Backoff::new(1, Duration::ZERO, Duration::ZERO).delays().count(), 0);
    }
}
