//! Per-connection counters on simulated time: the message rate bucket and the violation count.

use std::time::Duration;

use crate::time::Instant;

/// A token bucket counted in thousandths of a message, refilled from the `now` of each call.
#[derive(Clone, Copy, Debug)]
pub(crate) struct RateBucket {
    milli_tokens: u64,
    refilled_at: Instant,
}

impl RateBucket {
    /// A full bucket.
    pub(crate) fn new(burst: u32, now: Instant) -> Self {
        Self {
            milli_tokens: u64::from(burst) * 1000,
            refilled_at: now,
        }
    }

    /// Takes one message's worth of tokens if there is one.
    pub(crate) fn try_take(&mut self, rate_per_second: u32, burst: u32, now: Instant) -> bool {
        // `rate` messages per second is `rate` thousandths of a message per millisecond.
        let elapsed = now.as_millis().saturating_sub(self.refilled_at.as_millis());
        let refill = elapsed.saturating_mul(u64::from(rate_per_second));
        self.milli_tokens = self
            .milli_tokens
            .saturating_add(refill)
            .min(u64::from(burst) * 1000);
        self.refilled_at = self.refilled_at.max(now);

        if self.milli_tokens < 1000 {
            return false;
        }
        self.milli_tokens -= 1000;
        true
    }
}

/// Counts protocol violations, forgiving one per `decay` without new ones.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Violations {
    count: u32,
    last: Instant,
}

impl Violations {
    pub(crate) fn new(now: Instant) -> Self {
        Self {
            count: 0,
            last: now,
        }
    }

    /// Records one violation and returns the count after it.
    pub(crate) fn record(&mut self, decay: Duration, now: Instant) -> u32 {
        let decay_ms = u64::try_from(decay.as_millis()).unwrap_or(u64::MAX).max(1);
        let forgiven = now.as_millis().saturating_sub(self.last.as_millis()) / decay_ms;
        self.count = self
            .count
            .saturating_sub(u32::try_from(forgiven).unwrap_or(u32::MAX));
        self.count = self.count.saturating_add(1);
        self.last = now;
        self.count
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bucket_allows_burst_then_refills_at_rate() {
        let start = Instant::from_millis(10_000);
        let mut bucket = RateBucket::new(3, start);
        assert!((0..3).all(|_| bucket.try_take(10, 3, start)));
        assert!(!bucket.try_take(10, 3, start));
        // 10 per second: one message per 100 ms.
        assert!(!bucket.try_take(10, 3, start + Duration::from_millis(99)));
        assert!(bucket.try_take(10, 3, start + Duration::from_millis(100)));
        // A long pause refills only up to the burst.
        let later = start + Duration::from_secs(60);
        assert!((0..3).all(|_| bucket.try_take(10, 3, later)));
        assert!(!bucket.try_take(10, 3, later));
    }

    #[test]
    fn violations_decay_over_time() {
        let start = Instant::ZERO;
        let decay = Duration::from_secs(60);
        let mut violations = Violations::new(start);
        assert_eq!(violations.record(decay, start), 1);
        assert_eq!(violations.record(decay, start), 2);
        assert_eq!(violations.record(decay, start + Duration::from_secs(59)), 3);
        assert_eq!(
            violations.record(decay, start + Duration::from_secs(59 + 120)),
            2
        );
    }
}
