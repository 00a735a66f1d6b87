//! Special functions for the customer-base models: log-gamma, digamma and the Gaussian
//! hypergeometric function 2F1 (in log space), plus a log-sum-exp helper. Pure `f64` code.

use std::f64::consts::PI;

const LN_SQRT_2PI: f64 = 0.918_938_533_204_672_8;

/// `ln Γ(x)` for `x > 0` (NaN otherwise): shift to `x >= 10`, then Stirling's series to `x^-15`
/// (absolute error about 1e-15).
pub fn ln_gamma(x: f64) -> f64 {
    if x.is_nan() || x <= 0.0 || x.is_infinite() {
        return if x == f64::INFINITY { x } else { f64::NAN };
    }
    let mut z = x;
    let mut prod = 1.0;
    while z < 10.0 {
        prod *= z;
        z += 1.0;
    }
    let zi = 1.0 / z;
    let zi2 = zi * zi;
    // Bernoulli terms B_2k / (2k (2k-1) z^(2k-1)).
    let series = zi
        * (1.0 / 12.0
            + zi2
                * (-1.0 / 360.0
                    + zi2
                        * (1.0 / 1260.0
                            + zi2
                                * (-1.0 / 1680.0
                                    + zi2
                                        * (1.0 / 1188.0
                                            + zi2
                                                * (-691.0 / 360_360.0
                                                    + zi2
                                                        * (1.0 / 156.0
                                                            + zi2 * (-3617.0 / 122_400.0))))))));
    (z - 0.5) * z.ln() - z + LN_SQRT_2PI + series - prod.ln()
}

/// The digamma function `ψ(x) = d/dx ln Γ(x)` for `x > 0`: shift to `x >= 10`, then the asymptotic
/// series.
pub fn digamma(x: f64) -> f64 {
    if x.is_nan() || x <= 0.0 || x.is_infinite() {
        return if x == f64::INFINITY { x } else { f64::NAN };
    }
    let mut z = x;
    let mut acc = 0.0;
    while z < 10.0 {
        acc -= 1.0 / z;
        z += 1.0;
    }
    let zi2 = 1.0 / (z * z);
    let series = zi2
        * (1.0 / 12.0
            - zi2
                * (1.0 / 120.0
                    - zi2
                        * (1.0 / 252.0
                            - zi2
                                * (1.0 / 240.0
                                    - zi2
                                        * (1.0 / 132.0 - zi2 * (691.0 / 32_760.0 - zi2 / 12.0))))));
    acc + z.ln() - 0.5 / z - series
}

/// `ln(e^a + e^b)` without overflow.
#[inline]
pub fn log_add_exp(a: f64, b: f64) -> f64 {
    if a == f64::NEG_INFINITY {
        return b;
    }
    if b == f64::NEG_INFINITY {
        return a;
    }
    let m = a.max(b);
    m + ((a - m).exp() + (b - m).exp()).ln()
}

/// `ln(e^a - e^b)` for `a >= b` (`-inf` when equal).
#[inline]
pub fn log_sub_exp(a: f64, b: f64) -> f64 {
    if b == f64::NEG_INFINITY {
        return a;
    }
    a + (-(b - a).exp_m1()).ln()
}

/// Series terms the direct sum may take before the integral is preferred.
const SERIES_BUDGET: usize = 20_000;
/// Terms the series may take when no integral form applies.
const SERIES_LIMIT: usize = 50_000_000;

/// `ln 2F1(a, b; c; z)` for `0 <= z < 1` and `a, b, c > 0` (every term of the series is then
/// positive). The power series is summed with rescaling (no overflow however large the terms
/// grow); where it would converge slowly (z near 1) and an Euler integral applies (`c > b > 0` or
/// `c > a > 0`), the integral is evaluated by tanh-sinh quadrature instead. NaN outside the domain
/// or when neither converges.
pub fn ln_hyp2f1(a: f64, b: f64, c: f64, z: f64) -> f64 {
    if !(a > 0.0 && b > 0.0 && c > 0.0 && (0.0..1.0).contains(&z)) {
        return f64::NAN;
    }
    if z == 0.0 {
        return 0.0;
    }
    if let Some(v) = ln_hyp2f1_series(a, b, c, z, SERIES_BUDGET) {
        return v;
    }
    if c > b {
        return ln_hyp2f1_euler(a, b, c, z);
    }
    if c > a {
        return ln_hyp2f1_euler(b, a, c, z);
    }
    ln_hyp2f1_series(a, b, c, z, SERIES_LIMIT).unwrap_or(f64::NAN)
}

/// The power series, with positive terms; None when it has not converged within `limit` terms.
pub fn ln_hyp2f1_series(a: f64, b: f64, c: f64, z: f64, limit: usize) -> Option<f64> {
    let (mut term, mut sum, mut log_scale) = (1.0f64, 1.0f64, 0.0f64);
    const BIG: f64 = 1e200;
    for k in 0..limit {
        let kf = k as f64;
        let ratio = (a + kf) * (b + kf) / ((c + kf) * (kf + 1.0)) * z;
        term *= ratio;
        sum += term;
        if sum > BIG {
            sum /= BIG;
            term /= BIG;
            log_scale += BIG.ln();
        }
        // Converged once the terms are negligible and shrinking for good (ratio < 1 stays so:
        // it tends to z from whichever side).
        if term <= sum * 1e-17 && ratio < 1.0 {
            // The tail is at most term * ratio / (1 - ratio) when the ratio keeps falling; bound
            // it with the limit z when the ratio still rises towards it.
            let r = ratio.max(z);
            if term * r / (1.0 - r) <= sum * 1e-16 {
                return Some(sum.ln() + log_scale);
            }
        }
    }
    None
}

/// Euler's integral, for `c > b > 0`:
/// `2F1(a, b; c; z) = Γ(c) / (Γ(b) Γ(c-b)) ∫_0^1 t^(b-1) (1-t)^(c-b-1) (1-zt)^(-a) dt`,
/// by tanh-sinh quadrature (exact-to-rounding for the endpoint singularities this has), summed in
/// log space; the step is halved until two levels agree to 1e-13.
pub fn ln_hyp2f1_euler(a: f64, b: f64, c: f64, z: f64) -> f64 {
    let norm = ln_gamma(c) - ln_gamma(b) - ln_gamma(c - b);
    let log_f = |t: f64, one_minus_t: f64| {
        (b - 1.0) * t.ln() + (c - b - 1.0) * one_minus_t.ln() - a * (-z * t).ln_1p()
    };
    // Nodes u = k h on [-U, U]; t = 1 / (1 + e^(-π sinh u)), dt/du = π cosh u · t (1 - t).
    let node = |u: f64| -> Option<f64> {
        let s = PI * u.sinh();
        // t and 1 - t computed separately so neither loses precision near its endpoint.
        let (t, omt) = if s >= 0.0 {
            let e = (-s).exp();
            (1.0 / (1.0 + e), e / (1.0 + e))
        } else {
            let e = s.exp();
            (e / (1.0 + e), 1.0 / (1.0 + e))
        };
        if t <= 0.0 || omt <= 0.0 {
            return None;
        }
        Some(log_f(t, omt) + (PI * u.cosh()).ln() + t.ln() + omt.ln())
    };
    const U: f64 = 6.5;
    let mut h = 0.5;
    let mut logs: Vec<f64> = vec![];
    let mut k = 0i64;
    // Level 0: every node k h.
    loop {
        let u = k as f64 * h;
        if u > U {
            break;
        }
        for uu in if k == 0 { vec![0.0] } else { vec![u, -u] } {
            if let Some(v) = node(uu) {
                logs.push(v);
            }
        }
        k += 1;
    }
    let total = |logs: &[f64], h: f64| -> f64 {
        let m = logs.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
        m + logs.iter().map(|v| (v - m).exp()).sum::<f64>().ln() + h.ln()
    };
    let mut prev = total(&logs, h);
    for _level in 0..8 {
        // Halve the step: add the odd multiples of the new step.
        h /= 2.0;
        let mut k = 1i64;
        loop {
            let u = k as f64 * h;
            if u > U {
                break;
            }
            for uu in [u, -u] {
                if let Some(v) = node(uu) {
                    logs.push(v);
                }
            }
            k += 2;
        }
        let cur = total(&logs, h);
        if (cur - prev).abs() < 1e-13 {
            return cur + norm;
        }
        prev = cur;
    }
    prev + norm
}

#[cfg(test)]
mod tests {
    use super::*;

    fn close(a: f64, b: f64, tol: f64) -> bool {
        (a - b).abs() <= tol * b.abs().max(1.0)
    }

    #[test]
    fn ln_gamma_known_values() {
        assert!(close(ln_gamma(1.0), 0.0, 1e-14));
        assert!(close(ln_gamma(2.0), 0.0, 1e-14));
        assert!(close(ln_gamma(0.5), PI.sqrt().ln(), 1e-14));
        assert!(close(ln_gamma(10.0), 362_880f64.ln(), 1e-14));
        // ln(170!) from the factorial.
        let f: f64 = (1..=170).map(|k| (k as f64).ln()).sum();
        assert!(close(ln_gamma(171.0), f, 1e-14));
        assert!(close(
            ln_gamma(1e-8),
            -(1e-8f64).ln() - 0.577_215_664_901_532_9e-8,
            1e-12
        ));
        assert!(ln_gamma(0.0).is_nan() && ln_gamma(-1.5).is_nan());
        // Recurrence Γ(x+1) = x Γ(x) across the shift boundary.
        for x in [0.3, 3.7, 9.99, 10.0, 25.5] {
            assert!(
                close(ln_gamma(x + 1.0), ln_gamma(x) + f64::ln(x), 1e-14),
                "{x}"
            );
        }
    }

    #[test]
    fn digamma_known_values() {
        let euler = 0.577_215_664_901_532_9;
        assert!(close(digamma(1.0), -euler, 1e-15));
        assert!(close(digamma(0.5), -euler - 2.0 * 2f64.ln(), 1e-14));
        assert!(close(
            digamma(10.0),
            -euler + (1..10).map(|k| 1.0 / k as f64).sum::<f64>(),
            1e-14
        ));
        // Derivative of ln_gamma by central differences.
        for x in [0.2, 1.7, 8.0, 40.0] {
            let h = 1e-5 * x;
            let d = (ln_gamma(x + h) - ln_gamma(x - h)) / (2.0 * h);
            assert!(close(digamma(x), d, 1e-8), "{x}");
        }
    }

    #[test]
    fn hyp2f1_closed_forms() {
        for z in [0.0f64, 0.1, 0.5, 0.9, 0.99, 0.999_99] {
            // 2F1(1, 1; 2; z) = -ln(1 - z) / z.
            let want = if z == 0.0 { 1.0 } else { -(-z).ln_1p() / z };
            assert!(close(ln_hyp2f1(1.0, 1.0, 2.0, z), want.ln(), 1e-12), "{z}");
            // 2F1(a, b; b; z) = (1 - z)^(-a).
            assert!(
                close(ln_hyp2f1(2.5, 3.0, 3.0, z), -2.5 * (-z).ln_1p(), 1e-12),
                "{z}"
            );
            // 2F1(1/2, 1/2; 3/2; x^2) = asin(x) / x.
            let x = z.sqrt();
            let want = if x == 0.0 { 1.0 } else { x.asin() / x };
            assert!(close(ln_hyp2f1(0.5, 0.5, 1.5, z), want.ln(), 1e-12), "{z}");
        }
    }

    #[test]
    fn series_and_integral_agree() {
        for (a, b, c) in [
            (0.7, 1.3, 2.9),
            (30.0, 4.0, 31.0),
            (2.0, 0.4, 1.5),
            (120.0, 80.0, 199.0),
        ] {
            for z in [0.05, 0.5, 0.95] {
                let s = ln_hyp2f1_series(a, b, c, z, SERIES_LIMIT).unwrap();
                let i = if c > b {
                    ln_hyp2f1_euler(a, b, c, z)
                } else {
                    ln_hyp2f1_euler(b, a, c, z)
                };
                assert!(close(s, i, 1e-11), "{a} {b} {c} {z}: {s} vs {i}");
            }
        }
        // Huge terms: no overflow.
        assert!(ln_hyp2f1(500.0, 500.0, 2.0, 0.9).is_finite());
    }

    #[test]
    fn log_sum_helpers() {
        assert!(close(
            log_add_exp(1000.0, 1000.0),
            1000.0 + 2f64.ln(),
            1e-15
        ));
        assert_eq!(log_add_exp(f64::NEG_INFINITY, 3.0), 3.0);
        assert!(close(log_sub_exp(2f64.ln(), 0.0), 0.0, 1e-15));
        assert_eq!(log_sub_exp(1.0, 1.0), f64::NEG_INFINITY);
    }
}
