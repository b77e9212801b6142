//! When to try the upstream again and how long to wait first: exponential backoff with full
//! jitter, the upstream's own `Retry-After` honoured up to a cap, and a budget for all waiting.

use std::time::Duration;

/// The retry settings, each from a var (see the README for the names and defaults).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Policy {
    /// Attempts in all, the first included.
    pub max_attempts: u32,
    /// The backoff before the second attempt, doubled for each one after.
    pub base_delay: Duration,
    /// The longest single wait, whether from backoff or from `Retry-After`.
    pub max_delay: Duration,
    /// The most time all the waits of one request may add up to.
    pub budget: Duration,
}

impl Default for Policy {
    fn default() -> Self {
        Self {
            max_attempts: 3,
            base_delay: Duration::from_millis(250),
            max_delay: Duration::from_secs(8),
            budget: Duration::from_secs(20),
        }
    }
}

/// Statuses worth another attempt: rate limits and the server errors that are usually brief.
/// Other 4xx are the request's fault and never retried.
#[must_use]
pub fn is_retryable_status(status: u16) -> bool {
    matches!(status, 429 | 500 | 502 | 503 | 504 | 529)
}

/// What the upstream asked for: `retry-after-ms` (milliseconds, OpenAI's) before `retry-after`
/// (whole seconds). An HTTP-date or anything unreadable counts as no advice.
#[must_use]
pub fn retry_after(retry_after_ms: Option<&str>, retry_after: Option<&str>) -> Option<Duration> {
    let millis = retry_after_ms
        .and_then(|text| text.trim().parse::<f64>().ok())
        .filter(|ms| ms.is_finite() && *ms >= 0.0)
        .map(|ms| Duration::from_secs_f64(ms.min(1e9) / 1000.0));
    millis.or_else(|| {
        retry_after.and_then(|text| text.trim().parse::<u64>().ok()).map(Duration::from_secs)
    })
}

impl Policy {
    /// The wait before attempt number `next` (2 for the first retry), or `None` to stop: no
    /// attempts left, the upstream asks for longer than `max_delay`, or the wait would overrun
    /// the budget given what was already `waited`. `random` is a fresh random number.
    #[must_use]
    pub fn delay(
        &self,
        next: u32,
        advice: Option<Duration>,
        waited: Duration,
        random: u32,
    ) -> Option<Duration> {
        if next > self.max_attempts {
            return None;
        }
        let delay = match advice {
            Some(advice) if advice > self.max_delay => return None,
            Some(advice) => advice,
            None => self.backoff(next, random),
        };
        (waited + delay <= self.budget).then_some(delay)
    }

    /// Full jitter: a uniform wait between zero and `base * 2^(retry - 1)`, capped.
    fn backoff(&self, next: u32, random: u32) -> Duration {
        let doublings = next.saturating_sub(2).min(20);
        let ceiling = self.base_delay.saturating_mul(1 << doublings).min(self.max_delay);
        let fraction = f64::from(random) / f64::from(u32::MAX);
        ceiling.mul_f64(fraction)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: fn(u64) -> Duration = Duration::from_millis;

    #[test]
    fn only_transient_statuses_are_retried() {
        for status in [429, 500, 502, 503, 504, 529] {
            assert!(is_retryable_status(status), "{status}");
        }
        for status in [200, 400, 401, 402, 403, 404, 408, 413, 422, 501, 505] {
            assert!(!is_retryable_status(status), "{status}");
        }
    }

    #[test]
    fn backoff_doubles_under_full_jitter_and_stops_at_the_cap() {
        let policy = Policy { max_attempts: 10, ..Policy::default() };
        let top = u32::MAX;
        assert_eq!(policy.delay(2, None, Duration::ZERO, top), Some(MS(250)));
        assert_eq!(policy.delay(3, None, Duration::ZERO, top), Some(MS(500)));
        assert_eq!(policy.delay(4, None, Duration::ZERO, top), Some(MS(1000)));
        assert_eq!(policy.delay(9, None, Duration::ZERO, top), Some(Duration::from_secs(8)));
        assert_eq!(policy.delay(3, None, Duration::ZERO, 0), Some(Duration::ZERO));
        let half = policy.delay(3, None, Duration::ZERO, u32::MAX / 2).unwrap_or_default();
        assert!((MS(249)..=MS(251)).contains(&half), "{half:?}");
    }

    #[test]
    fn attempts_and_budget_run_out() {
        let policy = Policy::default();
        assert!(policy.delay(3, None, Duration::ZERO, 0).is_some());
        assert_eq!(policy.delay(4, None, Duration::ZERO, 0), None);
        assert_eq!(policy.delay(2, Some(MS(2000)), Duration::from_secs(19), 0), None);
        assert_eq!(policy.delay(2, Some(MS(1000)), Duration::from_secs(19), 0), Some(MS(1000)));
    }

    #[test]
    fn the_upstreams_advice_is_followed_up_to_the_cap() {
        let policy = Policy::default();
        assert_eq!(policy.delay(2, Some(MS(1500)), Duration::ZERO, 7), Some(MS(1500)));
        assert_eq!(policy.delay(2, Some(Duration::from_secs(20)), Duration::ZERO, 7), None);
    }

    #[test]
    fn retry_after_headers_are_read() {
        assert_eq!(retry_after(Some("1500"), Some("20")), Some(MS(1500)));
        assert_eq!(retry_after(Some("12.5"), None), Some(Duration::from_micros(12_500)));
        assert_eq!(retry_after(None, Some(" 3 ")), Some(Duration::from_secs(3)));
        assert_eq!(retry_after(Some("soon"), Some("2")), Some(Duration::from_secs(2)));
        assert_eq!(retry_after(None, Some("Wed, 21 Oct 2026 07:28:00 GMT")), None);
        assert_eq!(retry_after(Some("-1"), Some("-1")), None);
        assert_eq!(retry_after(Some("NaN"), None), None);
        assert_eq!(retry_after(None, None), None);
    }
}
