//! When to renew a certificate and when to warn that one is running out.
//!
//! Renewal follows step-ca and cert-manager: at two thirds of the lifetime, spread by a
//! random jitter so that certificates issued together do not renew together. Warnings:
//! a certificate that lives 90 days or more warns at 30, 14 and 7 days before it expires;
//! a shorter one (an SVID lives 24 hours) warns once a third of its lifetime is left.

/// Lifetimes at or above this are "long" (seconds).
pub const LONG_LIFETIME: i64 = 90 * 86_400;
/// Days before expiry at which a long certificate warns.
pub const LONG_WARNINGS_DAYS: [i64; 3] = [30, 14, 7];

/// When to renew a certificate valid from `not_before` to `not_after` (Unix seconds):
/// at 2/3 of its lifetime, minus up to 1/20 of the lifetime of jitter (`jitter` in
/// `[0, 1)`), so never later than 2/3.
pub fn renew_at(not_before: i64, not_after: i64, jitter: f64) -> i64 {
    let lifetime = (not_after - not_before).max(0);
    let jitter = (jitter.clamp(0.0, 1.0) * (lifetime / 20) as f64) as i64;
    not_before + lifetime * 2 / 3 - jitter
}

/// A uniformly random jitter in `[0, 1)`.
pub fn random_jitter() -> f64 {
    let mut b = [0u8; 4];
    if aws_lc_rs::rand::fill(&mut b).is_err() {
        return 0.5;
    }
    f64::from(u32::from_be_bytes(b)) / (f64::from(u32::MAX) + 1.0)
}

/// Where a certificate stands at a moment.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Standing {
    /// Not yet valid.
    NotYetValid,
    /// Valid and outside its warning window.
    Fine,
    /// Inside its warning window: `threshold` is the window entered (seconds before expiry).
    Warning {
        /// Seconds left.
        seconds_left: i64,
        /// The window entered, in seconds before expiry.
        threshold: i64,
    },
    /// Expired.
    Expired,
}

/// The warning window of a certificate as `(threshold seconds before expiry)`, most
/// urgent last.
pub fn thresholds(not_before: i64, not_after: i64) -> Vec<i64> {
    let lifetime = not_after - not_before;
    if lifetime >= LONG_LIFETIME {
        LONG_WARNINGS_DAYS.iter().map(|d| d * 86_400).collect()
    } else {
        vec![lifetime / 3]
    }
}

/// Where a certificate valid from `not_before` to `not_after` stands at `now`.
pub fn standing(not_before: i64, not_after: i64, now: i64) -> Standing {
    if now < not_before {
        return Standing::NotYetValid;
    }
    let left = not_after - now;
    if left <= 0 {
        return Standing::Expired;
    }
    match thresholds(not_before, not_after)
        .into_iter()
        .filter(|t| left <= *t)
        .min()
    {
        Some(threshold) => Standing::Warning {
            seconds_left: left,
            threshold,
        },
        None => Standing::Fine,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renewal_lands_at_two_thirds_less_jitter() {
        assert_eq!(renew_at(0, 86_400, 0.0), 57_600);
        assert_eq!(renew_at(0, 86_400, 0.999_999), 57_600 - 4_319);
        assert!(renew_at(0, 120, 0.5) <= 80);
        let j = random_jitter();
        assert!((0.0..1.0).contains(&j));
    }

    #[test]
    fn warnings_for_long_and_short_certificates() {
        let day = 86_400;
        let year = 365 * day;
        assert_eq!(standing(0, year, 0), Standing::Fine);
        assert_eq!(standing(0, year, year - 31 * day), Standing::Fine);
        assert_eq!(
            standing(0, year, year - 20 * day),
            Standing::Warning {
                seconds_left: 20 * day,
                threshold: 30 * day
            }
        );
        assert_eq!(
            standing(0, year, year - 10 * day),
            Standing::Warning {
                seconds_left: 10 * day,
                threshold: 14 * day
            }
        );
        assert_eq!(
            standing(0, year, year - day),
            Standing::Warning {
                seconds_left: day,
                threshold: 7 * day
            }
        );
        assert_eq!(standing(0, year, year), Standing::Expired);
        // 24 h: warn with 8 h left.
        assert_eq!(standing(0, day, day - 9 * 3600), Standing::Fine);
        assert_eq!(
            standing(0, day, day - 7 * 3600),
            Standing::Warning {
                seconds_left: 7 * 3600,
                threshold: 8 * 3600
            }
        );
        assert_eq!(standing(10, day, 5), Standing::NotYetValid);
    }
}
