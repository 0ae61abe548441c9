//! Per-principal request rates: a token bucket for each principal, refilled at `rate`
//! requests per second up to `burst`. A request finding its bucket empty is answered
//! `ThrottlingException`, which the AWS SDKs retry with backoff.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Instant;

/// Buckets kept before idle ones are dropped (principals are authenticated, so this
/// bounds memory, not correctness: a dropped bucket comes back full).
const MAX_BUCKETS: usize = 10_000;

/// The limits; `None` rate means unlimited.
#[derive(Debug)]
pub struct RateLimits {
    rate: Option<f64>,
    burst: f64,
    buckets: Mutex<HashMap<String, Bucket>>,
}

#[derive(Debug, Clone, Copy)]
struct Bucket {
    tokens: f64,
    at: Instant,
}

impl RateLimits {
    /// `rate` requests per second per principal (`None`: no limit), bursts up to `burst`.
    pub fn new(rate: Option<f64>, burst: f64) -> Self {
        Self {
            rate,
            burst: burst.max(1.0),
            buckets: Mutex::new(HashMap::new()),
        }
    }

    /// Takes a token for `principal`; false if it has none left.
    pub fn allow(&self, principal: &str) -> bool {
        self.allow_at(principal, Instant::now())
    }

    fn allow_at(&self, principal: &str, now: Instant) -> bool {
        let Some(rate) = self.rate else {
            return true;
        };
        let Ok(mut buckets) = self.buckets.lock() else {
            return true;
        };
        if buckets.len() >= MAX_BUCKETS && !buckets.contains_key(principal) {
            let burst = self.burst;
            // Full buckets carry no information: drop them.
            buckets.retain(|_, b| b.tokens + now.duration_since(b.at).as_secs_f64() * rate < burst);
        }
        let bucket = buckets.entry(principal.to_owned()).or_insert(Bucket {
            tokens: self.burst,
            at: now,
        });
        let refill = now.saturating_duration_since(bucket.at).as_secs_f64() * rate;
        bucket.tokens = (bucket.tokens + refill).min(self.burst);
        bucket.at = now;
        if bucket.tokens >= 1.0 {
            bucket.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn buckets_refill_per_principal() {
        let limits = RateLimits::new(Some(10.0), 5.0);
        let t0 = Instant::now();
        for _ in 0..5 {
            assert!(limits.allow_at("a", t0));
        }
        assert!(!limits.allow_at("a", t0), "burst spent");
        assert!(
            limits.allow_at("b", t0),
            "each principal has its own bucket"
        );
        assert!(!limits.allow_at("a", t0 + Duration::from_millis(50)));
        assert!(
            limits.allow_at("a", t0 + Duration::from_millis(120)),
            "refilled"
        );
        let unlimited = RateLimits::new(None, 1.0);
        assert!((0..10_000).all(|_| unlimited.allow_at("a", t0)));
    }
}
