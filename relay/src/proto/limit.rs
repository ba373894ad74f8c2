//! Token buckets for bandwidth and answer-rate limits, on caller-supplied time.

use std::time::Duration;

const NANOS: u128 = 1_000_000_000;

/// A token bucket that refills at `rate` tokens per second up to `burst` tokens.
///
/// Tokens are kept in units of one billionth so that refills between closely spaced packets
/// lose nothing to rounding.
#[derive(Clone, Copy, Debug)]
pub struct TokenBucket {
    rate: u128,
    capacity: u128,
    tokens: u128,
    last: Duration,
}

impl TokenBucket {
    /// A full bucket at `now`.
    pub fn new(rate: u64, burst: u64, now: Duration) -> Self {
        let capacity = u128::from(burst) * NANOS;
        Self {
            rate: u128::from(rate),
            capacity,
            tokens: capacity,
            last: now,
        }
    }

    fn refill(&mut self, now: Duration) {
        let elapsed = now.saturating_sub(self.last).as_nanos();
        self.last = self.last.max(now);
        self.tokens = self
            .capacity
            .min(self.tokens.saturating_add(self.rate * elapsed));
    }

    /// Takes `amount` tokens if there are enough at `now`.
    pub fn take(&mut self, amount: u64, now: Duration) -> bool {
        self.refill(now);
        let needed = u128::from(amount) * NANOS;
        if self.tokens < needed {
            return false;
        }
        self.tokens -= needed;
        true
    }

    /// Whether the bucket would be full at `now` (so it can be forgotten).
    pub fn is_full(&self, now: Duration) -> bool {
        let elapsed = now.saturating_sub(self.last).as_nanos();
        self.tokens.saturating_add(self.rate * elapsed) >= self.capacity
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refills_at_rate_up_to_burst() {
        let t0 = Duration::from_secs(100);
        let mut bucket = TokenBucket::new(1_000, 1_500, t0);
        assert!(bucket.take(1_500, t0));
        assert!(!bucket.take(1, t0));
        // 1 ms at 1000/s is one token.
        let t1 = t0 + Duration::from_micros(999);
        assert!(!bucket.take(1, t1));
        let t2 = t0 + Duration::from_millis(1);
        assert!(bucket.take(1, t2));
        assert!(!bucket.is_full(t2));
        assert!(bucket.is_full(t2 + Duration::from_secs(2)));
        let t3 = t2 + Duration::from_secs(10);
        assert!(bucket.take(1_500, t3));
        assert!(!bucket.take(1, t3));
    }
}
