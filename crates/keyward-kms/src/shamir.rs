//! Shamir's secret sharing over GF(2^8), for unseal shares.
//!
//! Each byte of the secret is the constant term of its own random polynomial of degree
//! `threshold - 1`; share `x` holds every polynomial's value at `x`. Any `threshold`
//! shares give the secret back by Lagrange interpolation at 0; fewer say nothing about
//! it. The field is AES's (x^8 + x^4 + x^3 + x + 1), and its arithmetic is done without
//! branches or tables, so that no memory access or branch depends on a secret byte.
//!
//! About forty lines; the crates that do this (`sharks`, `vsss-rs`) are unmaintained or
//! generic over curves, and none is constant-time in this field.

use zeroize::Zeroizing;

use crate::Error;

/// Bytes in the shared secret.
pub const SECRET_LEN: usize = 32;

/// One share: its x-coordinate (1 to 255) and the polynomials' values there.
pub struct Share {
    /// The x-coordinate, never 0 (that is where the secret is).
    pub x: u8,
    /// The values at `x`, one per secret byte.
    pub y: Zeroizing<[u8; SECRET_LEN]>,
}

impl std::fmt::Debug for Share {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Share")
            .field("x", &self.x)
            .finish_non_exhaustive()
    }
}

/// Multiplication in GF(2^8), branch-free.
fn mul(mut a: u8, mut b: u8) -> u8 {
    let mut p = 0u8;
    for _ in 0..8 {
        p ^= a & 0u8.wrapping_sub(b & 1);
        let carry = 0u8.wrapping_sub(a >> 7);
        a = (a << 1) ^ (0x1b & carry);
        b >>= 1;
    }
    p
}

/// The inverse in GF(2^8): a^254 (0 for 0).
fn inv(a: u8) -> u8 {
    // a^254 = a^(2+4+8+16+32+64+128)
    let mut result = 1u8;
    let mut square = a;
    for _ in 0..7 {
        square = mul(square, square);
        result = mul(result, square);
    }
    result
}

/// Whether `shares` shares with `threshold` needed is a split keyward makes: at most
/// 255 shares, a threshold of at least 2 (of 1 only for a single share), and no more
/// than the shares.
pub fn check_split(shares: u8, threshold: u8) -> Result<(), Error> {
    match (shares, threshold) {
        (0, _) => Err(Error::Validation("there must be at least one share".into())),
        (s, t) if t > s => Err(Error::Validation(format!(
            "the threshold ({t}) cannot be more than the shares ({s})"
        ))),
        (s, t) if t < 2 && s > 1 => Err(Error::Validation(format!(
            "with {s} shares the threshold must be at least 2: one share alone must not unseal"
        ))),
        (_, 0) => Err(Error::Validation("the threshold must be at least 1".into())),
        _ => Ok(()),
    }
}

/// Splits `secret` into `shares` shares, any `threshold` of which give it back.
pub fn split(secret: &[u8; SECRET_LEN], shares: u8, threshold: u8) -> Result<Vec<Share>, Error> {
    check_split(shares, threshold)?;
    let degree = usize::from(threshold) - 1;
    // coefficients[k * SECRET_LEN + b]: byte b's polynomial, coefficient of x^(k+1).
    let mut coefficients = Zeroizing::new(vec![0u8; degree * SECRET_LEN]);
    aws_lc_rs::rand::fill(&mut coefficients)
        .map_err(|_| Error::Internal("random number generator failed"))?;
    Ok((1..=shares)
        .map(|x| {
            let mut y = Zeroizing::new([0u8; SECRET_LEN]);
            for (b, out) in y.iter_mut().enumerate() {
                // Horner, from the highest coefficient down to the secret byte.
                let mut acc = 0u8;
                for k in (0..degree).rev() {
                    acc = mul(acc, x) ^ coefficients[k * SECRET_LEN + b];
                }
                *out = mul(acc, x) ^ secret[b];
            }
            Share { x, y }
        })
        .collect())
}

/// The secret that `shares` (distinct, non-zero x) interpolate to at 0. With fewer
/// shares than the threshold the result is unrelated to the secret.
pub fn combine(shares: &[Share]) -> Result<Zeroizing<[u8; SECRET_LEN]>, Error> {
    for (i, s) in shares.iter().enumerate() {
        if s.x == 0 || shares[..i].iter().any(|t| t.x == s.x) {
            return Err(Error::Validation(
                "shares must have distinct, non-zero x".into(),
            ));
        }
    }
    let mut secret = Zeroizing::new([0u8; SECRET_LEN]);
    for (i, s) in shares.iter().enumerate() {
        // The Lagrange basis polynomial of x_i, at 0: the product of x_j / (x_j - x_i).
        let basis = shares
            .iter()
            .enumerate()
            .filter(|&(j, _)| j != i)
            .fold(1u8, |acc, (_, t)| mul(acc, mul(t.x, inv(t.x ^ s.x))));
        for (out, &y) in secret.iter_mut().zip(s.y.iter()) {
            *out ^= mul(y, basis);
        }
    }
    Ok(secret)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn field_arithmetic_is_the_aes_field() {
        // FIPS-197, section 4.2.
        assert_eq!(mul(0x57, 0x83), 0xc1);
        assert_eq!(mul(0x57, 0x13), 0xfe);
        for a in 1..=255u8 {
            assert_eq!(mul(a, inv(a)), 1, "inverse of {a:#x}");
            assert_eq!(mul(a, 1), a);
            assert_eq!(mul(a, 0), 0);
        }
        assert_eq!(inv(0), 0);
    }

    fn subsets(n: u8, k: usize) -> Vec<Vec<usize>> {
        let mut out = Vec::new();
        for mask in 0u32..(1 << n) {
            if mask.count_ones() as usize == k {
                out.push(
                    (0..usize::from(n))
                        .filter(|i| mask & (1 << i) != 0)
                        .collect(),
                );
            }
        }
        out
    }

    fn pick(shares: &[Share], which: &[usize]) -> Vec<Share> {
        which
            .iter()
            .map(|&i| Share {
                x: shares[i].x,
                y: shares[i].y.clone(),
            })
            .collect()
    }

    #[test]
    fn any_threshold_shares_give_the_secret_and_fewer_do_not() {
        let mut secret = [0u8; SECRET_LEN];
        aws_lc_rs::rand::fill(&mut secret).unwrap();
        for (n, t) in [(1, 1), (2, 2), (3, 2), (5, 3), (6, 6)] {
            let shares = split(&secret, n, t).unwrap();
            assert_eq!(shares.len(), usize::from(n));
            for which in subsets(n, usize::from(t)) {
                let mut chosen = pick(&shares, &which);
                assert_eq!(*combine(&chosen).unwrap(), secret, "{n}/{t} {which:?}");
                chosen.reverse();
                assert_eq!(*combine(&chosen).unwrap(), secret, "{n}/{t} reversed");
            }
            if t > 1 {
                for which in subsets(n, usize::from(t) - 1) {
                    assert_ne!(*combine(&pick(&shares, &which)).unwrap(), secret);
                }
            }
        }
    }

    #[test]
    fn a_changed_share_gives_another_secret() {
        let secret = [7u8; SECRET_LEN];
        let mut shares = split(&secret, 3, 2).unwrap();
        shares[0].y[5] ^= 1;
        let got = combine(&pick(&shares, &[0, 1])).unwrap();
        assert_ne!(*got, secret);
        assert_eq!(got[..5], secret[..5], "only the changed byte differs");
    }

    #[test]
    fn bad_splits_are_refused() {
        let s = [0u8; SECRET_LEN];
        assert!(split(&s, 0, 0).is_err());
        assert!(split(&s, 3, 4).is_err());
        assert!(split(&s, 3, 1).is_err());
        assert!(split(&s, 3, 0).is_err());
        assert!(split(&s, 255, 255).is_ok());
        let shares = split(&s, 3, 2).unwrap();
        let dup = vec![pick(&shares, &[0]).remove(0), pick(&shares, &[0]).remove(0)];
        assert!(combine(&dup).is_err());
    }
}
