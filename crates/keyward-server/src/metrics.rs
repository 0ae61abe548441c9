//! Prometheus metrics for `/metrics`: requests by operation and outcome, their latency,
//! decrypt failures and throttles. Operation labels are only the KMS operations keyward
//! serves (anything else counts as `other`), so clients cannot grow the label set.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::Mutex;
use std::time::Duration;

/// Latency histogram bucket bounds, seconds.
const BUCKETS: [f64; 12] = [
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.5, 2.5,
];

/// How a request ended, for the `outcome` label.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Outcome {
    /// Answered 200.
    Ok,
    /// Refused by authentication or a key policy.
    Denied,
    /// Over its rate.
    Throttled,
    /// Another 4xx.
    ClientError,
    /// A 5xx.
    ServerError,
}

impl Outcome {
    fn label(self) -> &'static str {
        match self {
            Self::Ok => "ok",
            Self::Denied => "denied",
            Self::Throttled => "throttled",
            Self::ClientError => "client_error",
            Self::ServerError => "server_error",
        }
    }
}

#[derive(Debug, Default, Clone, Copy)]
struct Buckets {
    counts: [u64; BUCKETS.len()],
    count: u64,
    sum: f64,
}

impl Buckets {
    fn observe(&mut self, took: Duration) {
        let s = took.as_secs_f64();
        for (i, bound) in BUCKETS.iter().enumerate() {
            if s <= *bound {
                self.counts[i] += 1;
            }
        }
        self.count += 1;
        self.sum += s;
    }

    /// Writes the `_bucket`, `_sum` and `_count` lines of `name`, with `labels` (each
    /// `k="v"`, comma-separated, or empty).
    fn write(&self, out: &mut String, name: &str, labels: &str) {
        let sep = if labels.is_empty() { "" } else { "," };
        for (bound, n) in BUCKETS.iter().zip(self.counts) {
            let _ = writeln!(out, "{name}_bucket{{{labels}{sep}le=\"{bound}\"}} {n}");
        }
        let _ = writeln!(
            out,
            "{name}_bucket{{{labels}{sep}le=\"+Inf\"}} {}",
            self.count
        );
        let braces = |s: &str| {
            if s.is_empty() {
                String::new()
            } else {
                format!("{{{s}}}")
            }
        };
        let _ = writeln!(out, "{name}_sum{} {}", braces(labels), self.sum);
        let _ = writeln!(out, "{name}_count{} {}", braces(labels), self.count);
    }
}

/// A latency histogram of its own (one series, no labels).
#[derive(Debug, Default)]
pub struct Histogram(Mutex<Buckets>);

impl Histogram {
    /// Counts one observation.
    pub fn observe(&self, took: Duration) {
        if let Ok(mut b) = self.0.lock() {
            b.observe(took);
        }
    }

    /// Writes the histogram as `name` with its help text.
    pub fn write(&self, out: &mut String, name: &str, help: &str) {
        let Ok(b) = self.0.lock().map(|b| *b) else {
            return;
        };
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} histogram");
        b.write(out, name, "");
    }
}

#[derive(Debug, Default)]
struct Inner {
    requests: BTreeMap<(&'static str, Outcome), u64>,
    latency: BTreeMap<&'static str, Buckets>,
    decrypt_failures: u64,
}

/// The counters.
#[derive(Debug, Default)]
pub struct Metrics {
    inner: Mutex<Inner>,
}

/// The operation label for `target` (`TrentService.<Op>`).
pub fn operation_label(target: &str) -> &'static str {
    let op = target.strip_prefix("TrentService.").unwrap_or("");
    crate::protocol::OPERATIONS
        .iter()
        .find(|k| **k == op)
        .copied()
        .unwrap_or("other")
}

impl Metrics {
    /// Counts one request.
    pub fn observe(&self, operation: &'static str, outcome: Outcome, took: Duration) {
        let Ok(mut m) = self.inner.lock() else {
            return;
        };
        *m.requests.entry((operation, outcome)).or_default() += 1;
        if operation == "Decrypt" && outcome != Outcome::Ok && outcome != Outcome::Throttled {
            m.decrypt_failures += 1;
        }
        m.latency.entry(operation).or_default().observe(took);
    }

    /// The Prometheus text exposition of these counters.
    pub fn render(&self, out: &mut String) {
        let Ok(m) = self.inner.lock() else {
            return;
        };
        out.push_str("# HELP keyward_requests_total KMS requests by operation and outcome.\n");
        out.push_str("# TYPE keyward_requests_total counter\n");
        for ((op, outcome), n) in &m.requests {
            let _ = writeln!(
                out,
                "keyward_requests_total{{operation=\"{op}\",outcome=\"{}\"}} {n}",
                outcome.label()
            );
        }
        let throttled: u64 = m
            .requests
            .iter()
            .filter(|((_, o), _)| *o == Outcome::Throttled)
            .map(|(_, n)| n)
            .sum();
        out.push_str("# HELP keyward_throttled_requests_total Requests refused for their rate.\n");
        out.push_str("# TYPE keyward_throttled_requests_total counter\n");
        let _ = writeln!(out, "keyward_throttled_requests_total {throttled}");
        out.push_str("# HELP keyward_decrypt_failures_total Decrypt requests that failed.\n");
        out.push_str("# TYPE keyward_decrypt_failures_total counter\n");
        let _ = writeln!(out, "keyward_decrypt_failures_total {}", m.decrypt_failures);
        out.push_str("# HELP keyward_request_duration_seconds KMS request latency.\n");
        out.push_str("# TYPE keyward_request_duration_seconds histogram\n");
        for (op, h) in &m.latency {
            h.write(
                out,
                "keyward_request_duration_seconds",
                &format!("operation=\"{op}\""),
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counters_and_histograms_render() {
        let m = Metrics::default();
        m.observe("Decrypt", Outcome::Ok, Duration::from_micros(300));
        m.observe("Decrypt", Outcome::ClientError, Duration::from_millis(3));
        m.observe("Encrypt", Outcome::Throttled, Duration::from_micros(50));
        assert_eq!(operation_label("TrentService.Decrypt"), "Decrypt");
        assert_eq!(operation_label("TrentService.Anything"), "other");
        let mut out = String::new();
        m.render(&mut out);
        for line in [
            "keyward_requests_total{operation=\"Decrypt\",outcome=\"ok\"} 1",
            "keyward_requests_total{operation=\"Decrypt\",outcome=\"client_error\"} 1",
            "keyward_throttled_requests_total 1",
            "keyward_decrypt_failures_total 1",
            "keyward_request_duration_seconds_bucket{operation=\"Decrypt\",le=\"0.0005\"} 1",
            "keyward_request_duration_seconds_bucket{operation=\"Decrypt\",le=\"0.005\"} 2",
            "keyward_request_duration_seconds_count{operation=\"Decrypt\"} 2",
        ] {
            assert!(out.contains(line), "{line} missing:\n{out}");
        }
    }
}
