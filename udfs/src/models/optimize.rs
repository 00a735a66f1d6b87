//! Unconstrained minimisation by BFGS with a backtracking (Armijo) line search, for the model
//! fits (which work in log-parameter space, so every parameter stays positive).
//!
//! The objective writes its gradient into the slice it is given and returns its value; a
//! non-finite value is treated as "too far" by the line search. Convergence is declared when the
//! largest gradient component is below `gtol`; stalling at machine precision with a small
//! gradient (`stall_gtol`) also counts. Anything else is an error, never a silent answer.

#[derive(Debug, Clone, Copy)]
pub struct Options {
    pub gtol: f64,
    pub stall_gtol: f64,
    pub max_iterations: usize,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            gtol: 1e-9,
            stall_gtol: 1e-6,
            max_iterations: 2000,
        }
    }
}

#[derive(Debug, Clone)]
pub struct Minimum {
    pub x: Vec<f64>,
    pub value: f64,
    pub iterations: usize,
    pub gradient_norm: f64,
    /// The final inverse-Hessian approximation (row-major), to warm-start a related problem.
    pub inverse_hessian: Vec<f64>,
    /// Whether the gradient test was met. When not (the iteration limit, or a line search that
    /// can no longer decrease the objective, typically at a boundary of the parameter space),
    /// `x` is the best point reached.
    pub converged: bool,
}

fn norm_inf(g: &[f64]) -> f64 {
    g.iter().fold(0.0, |m, v| m.max(v.abs()))
}

fn dot(a: &[f64], b: &[f64]) -> f64 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}

/// Minimises `f` from `x0`.
pub fn bfgs(
    f: &mut dyn FnMut(&[f64], &mut [f64]) -> f64,
    x0: &[f64],
    opts: Options,
) -> Result<Minimum, String> {
    bfgs_from(f, x0, None, opts)
}

/// Minimises `f` from `x0`, with an initial inverse-Hessian approximation when given (e.g. from
/// the fit of a subsample).
pub fn bfgs_from(
    f: &mut dyn FnMut(&[f64], &mut [f64]) -> f64,
    x0: &[f64],
    h0: Option<&[f64]>,
    opts: Options,
) -> Result<Minimum, String> {
    let n = x0.len();
    let mut x = x0.to_vec();
    let mut g = vec![0.0; n];
    let mut fx = f(&x, &mut g);
    if !fx.is_finite() || g.iter().any(|v| !v.is_finite()) {
        return Err("the objective is not finite at the starting point".into());
    }
    // Inverse Hessian approximation, row-major.
    let mut h = vec![0.0; n * n];
    for i in 0..n {
        h[i * n + i] = 1.0;
    }
    let mut first = true;
    if let Some(h0) = h0.filter(|h| h.len() == n * n && h.iter().all(|v| v.is_finite())) {
        h.copy_from_slice(h0);
        first = false;
    }
    let (mut xn, mut gn, mut d) = (vec![0.0; n], vec![0.0; n], vec![0.0; n]);
    for it in 0..opts.max_iterations {
        let gnorm = norm_inf(&g);
        if gnorm < opts.gtol {
            return Ok(Minimum {
                x,
                value: fx,
                iterations: it,
                gradient_norm: gnorm,
                inverse_hessian: h,
                converged: true,
            });
        }
        for i in 0..n {
            d[i] = -(0..n).map(|j| h[i * n + j] * g[j]).sum::<f64>();
        }
        let mut slope = dot(&d, &g);
        if slope >= 0.0 {
            // Not a descent direction: restart from steepest descent.
            for i in 0..n {
                d[i] = -g[i];
                for j in 0..n {
                    h[i * n + j] = if i == j { 1.0 } else { 0.0 };
                }
            }
            first = true;
            slope = dot(&d, &g);
        }
        // Backtracking line search; the first step is capped so one iteration moves each log
        // parameter by at most 5.
        let dmax = norm_inf(&d);
        let mut step = if dmax > 5.0 { 5.0 / dmax } else { 1.0 };
        let mut fnew;
        loop {
            for i in 0..n {
                xn[i] = x[i] + step * d[i];
            }
            fnew = f(&xn, &mut gn);
            // Sufficient decrease (Armijo); or, near the optimum where the decrease is below the
            // objective's rounding noise, a step that keeps the value and shrinks the gradient.
            let noise = 1e-13 * fx.abs().max(1.0);
            if fnew.is_finite()
                && gn.iter().all(|v| v.is_finite())
                && (fnew <= fx + 1e-4 * step * slope
                    || ((fnew - fx).abs() <= noise && norm_inf(&gn) < gnorm))
            {
                break;
            }
            step *= 0.5;
            if step < 1e-20 {
                // No step decreases the objective any more: converged if the gradient is
                // already small, else the best point reached (often at a boundary).
                return Ok(Minimum {
                    x,
                    value: fx,
                    iterations: it,
                    gradient_norm: gnorm,
                    inverse_hessian: h,
                    converged: gnorm < opts.stall_gtol,
                });
            }
        }
        // BFGS update of the inverse Hessian with s = xn - x, y = gn - g.
        let s: Vec<f64> = (0..n).map(|i| xn[i] - x[i]).collect();
        let y: Vec<f64> = (0..n).map(|i| gn[i] - g[i]).collect();
        let sy = dot(&s, &y);
        if sy > 1e-12 * dot(&s, &s).sqrt() * dot(&y, &y).sqrt() {
            if first {
                let scale = sy / dot(&y, &y);
                for i in 0..n {
                    for j in 0..n {
                        h[i * n + j] = if i == j { scale } else { 0.0 };
                    }
                }
                first = false;
            }
            let rho = 1.0 / sy;
            let hy: Vec<f64> = (0..n)
                .map(|i| (0..n).map(|j| h[i * n + j] * y[j]).sum())
                .collect();
            let yhy = dot(&y, &hy);
            for i in 0..n {
                for j in 0..n {
                    h[i * n + j] +=
                        rho * ((1.0 + rho * yhy) * s[i] * s[j] - hy[i] * s[j] - s[i] * hy[j]);
                }
            }
        }
        let progress = fx - fnew;
        x.copy_from_slice(&xn);
        g.copy_from_slice(&gn);
        fx = fnew;
        if progress <= f64::EPSILON * fx.abs().max(1.0) && norm_inf(&g) < opts.stall_gtol {
            let gradient_norm = norm_inf(&g);
            return Ok(Minimum {
                x,
                value: fx,
                iterations: it + 1,
                gradient_norm,
                inverse_hessian: h,
                converged: true,
            });
        }
    }
    Ok(Minimum {
        gradient_norm: norm_inf(&g),
        x,
        value: fx,
        iterations: opts.max_iterations,
        inverse_hessian: h,
        converged: false,
    })
}

/// Central-difference gradient of `f` at `x` (step `h` per coordinate), for objectives without an
/// analytic gradient.
pub fn numeric_gradient(f: &mut dyn FnMut(&[f64]) -> f64, x: &[f64], h: f64, g: &mut [f64]) {
    let mut xp = x.to_vec();
    for i in 0..x.len() {
        xp[i] = x[i] + h;
        let up = f(&xp);
        xp[i] = x[i] - h;
        let down = f(&xp);
        xp[i] = x[i];
        g[i] = (up - down) / (2.0 * h);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rosenbrock() {
        let mut f = |x: &[f64], g: &mut [f64]| {
            let (a, b) = (x[0], x[1]);
            g[0] = -2.0 * (1.0 - a) - 400.0 * a * (b - a * a);
            g[1] = 200.0 * (b - a * a);
            (1.0 - a).powi(2) + 100.0 * (b - a * a).powi(2)
        };
        let m = bfgs(&mut f, &[-1.2, 1.0], Options::default()).unwrap();
        assert!(
            (m.x[0] - 1.0).abs() < 1e-7 && (m.x[1] - 1.0).abs() < 1e-7,
            "{m:?}"
        );
    }

    #[test]
    fn unbounded_objective_does_not_converge() {
        let mut f = |x: &[f64], g: &mut [f64]| {
            g[0] = -1.0;
            -x[0]
        };
        let m = bfgs(
            &mut f,
            &[0.0],
            Options {
                max_iterations: 50,
                ..Default::default()
            },
        )
        .unwrap();
        assert!(!m.converged && m.x[0] > 0.0, "{m:?}");
    }
}
