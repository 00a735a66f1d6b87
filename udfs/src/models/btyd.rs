//! The "buy till you die" customer-base models (pure kernel, no DataFusion types):
//! BG/NBD (Fader, Hardie & Lee 2005), Pareto/NBD (Schmittlein, Morrison & Colombo 1987, in the
//! form of Fader & Hardie's notes) and Gamma-Gamma spend (Fader, Hardie & Lee 2005b), with the
//! likelihoods and predictions of the Python `lifetimes` package (no penalizer).
//!
//! Fits collapse identical rows into weights ([`Collapsed`]), sort them (so the answer does not
//! depend on row order or partitioning), and minimise the mean negative log-likelihood in
//! log-parameter space with BFGS ([`super::optimize`]); the BG/NBD and Gamma-Gamma gradients are
//! analytic, the Pareto/NBD one is numeric. Several starting points are tried and the first
//! converged one wins; if none converges (degenerate data, e.g. almost every customer bought once,
//! where the likelihood is maximised at a boundary of the parameter space), the best point
//! reached is returned with `converged = false`.

use datafusion::common::HashMap;

use super::optimize::{Minimum, Options, bfgs, numeric_gradient};
use super::special::{digamma, ln_gamma, ln_hyp2f1, log_add_exp, log_sub_exp};

/// Helper threads that every fit in the process shares: at most one fewer than the cores, so
/// fits running in several concurrent queries (a server) never oversubscribe the machine. A fit
/// always works on its calling thread too; it borrows helpers only when some are free.
static SPARE_THREADS: std::sync::OnceLock<std::sync::atomic::AtomicUsize> =
    std::sync::OnceLock::new();

/// Helper threads borrowed from [`SPARE_THREADS`], given back on drop.
struct Helpers(usize);

impl Helpers {
    fn borrow(want: usize) -> Self {
        use std::sync::atomic::Ordering;
        let spare = SPARE_THREADS.get_or_init(|| {
            let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
            std::sync::atomic::AtomicUsize::new(cores.saturating_sub(1))
        });
        let mut got = 0;
        let _ = spare.fetch_update(Ordering::AcqRel, Ordering::Acquire, |free| {
            got = free.min(want);
            Some(free - got)
        });
        Helpers(got)
    }
}

impl Drop for Helpers {
    fn drop(&mut self) {
        if let Some(spare) = SPARE_THREADS.get() {
            spare.fetch_add(self.0, std::sync::atomic::Ordering::AcqRel);
        }
    }
}

/// Sorts by `key`, large inputs in two halves on two threads (when a helper is free), then merged.
fn sort_two_threads<T: Copy + Send, K: Ord>(mut v: Vec<T>, key: impl Fn(&T) -> K + Sync) -> Vec<T> {
    if v.len() <= 200_000 {
        v.sort_unstable_by_key(|e| key(e));
        return v;
    }
    let helpers = Helpers::borrow(1);
    if helpers.0 == 0 {
        v.sort_unstable_by_key(|e| key(e));
        return v;
    }
    let mid = v.len() / 2;
    let (a, b) = v.split_at_mut(mid);
    std::thread::scope(|s| {
        s.spawn(|| a.sort_unstable_by_key(|e| key(e)));
        b.sort_unstable_by_key(|e| key(e));
    });
    let (a, b) = v.split_at(mid);
    let mut out = Vec::with_capacity(v.len());
    let (mut i, mut j) = (0, 0);
    while i < a.len() || j < b.len() {
        if j == b.len() || (i < a.len() && key(&a[i]) <= key(&b[j])) {
            out.push(a[i]);
            i += 1;
        } else {
            out.push(b[j]);
            j += 1;
        }
    }
    out
}

/// Rows with weights, collapsed into distinct rows when read. Rows are appended as they come
/// (no hashing per row); [`Collapsed::rows`] sorts them by the values' bit patterns (with -0.0 as
/// 0.0) and adds up the weights of identical rows, so the result does not depend on arrival order.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Collapsed<const N: usize> {
    entries: Vec<([u64; N], f64)>,
}

impl<const N: usize> Collapsed<N> {
    pub fn add(&mut self, row: [f64; N], weight: f64) {
        let key = row.map(|v| if v == 0.0 { 0u64 } else { v.to_bits() });
        self.entries.push((key, weight));
    }

    pub fn merge(&mut self, other: &Self) {
        self.entries.extend_from_slice(&other.entries);
    }

    /// Rows added (before collapsing).
    pub fn raw_len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Distinct rows and their summed weights in a deterministic order (by the values' bit
    /// patterns, which for the non-negative inputs of the fits is numeric order; equal first
    /// values are adjacent). Large inputs are sorted in two halves on two threads, then merged.
    pub fn rows(&self) -> Vec<([f64; N], f64)> {
        if let Some(keys) = self.packed() {
            return Self::unpack_counted(sort_two_threads(keys, |k| *k));
        }
        let sorted = sort_two_threads(self.entries.clone(), |e| e.0);
        let mut out: Vec<([f64; N], f64)> = Vec::new();
        let mut last: Option<[u64; N]> = None;
        for (k, w) in sorted {
            if last == Some(k) {
                out.last_mut().expect("a previous row").1 += w;
            } else {
                out.push((k.map(f64::from_bits), w));
                last = Some(k);
            }
        }
        out
    }

    /// Bits per value when rows pack into one `u64`.
    const BITS: u32 = 64 / N as u32;

    /// The rows packed into single integers, when every weight is 1 and every value a small
    /// non-negative integer (day-granular summaries): sorting 8-byte keys is several times faster,
    /// and the order is the same (numeric order of each value in turn).
    fn packed(&self) -> Option<Vec<u64>> {
        let max = ((1u64 << Self::BITS) - 1) as f64;
        let mut out = Vec::with_capacity(self.entries.len());
        for (k, w) in &self.entries {
            if *w != 1.0 {
                return None;
            }
            let mut p = 0u64;
            for b in k {
                let v = f64::from_bits(*b);
                if !(v >= 0.0 && v <= max && v.fract() == 0.0) {
                    return None;
                }
                p = (p << Self::BITS) | v as u64;
            }
            out.push(p);
        }
        Some(out)
    }

    fn unpack_counted(sorted: Vec<u64>) -> Vec<([f64; N], f64)> {
        let mask = (1u64 << Self::BITS) - 1;
        let mut out: Vec<([f64; N], f64)> = Vec::new();
        let mut last = None;
        for k in sorted {
            if last == Some(k) {
                out.last_mut().expect("a previous row").1 += 1.0;
            } else {
                let row: [f64; N] = std::array::from_fn(|i| {
                    ((k >> (Self::BITS * (N - 1 - i) as u32)) & mask) as f64
                });
                out.push((row, 1.0));
                last = Some(k);
            }
        }
        out
    }

    /// The rows and weights as added (for partial states).
    pub fn entries(&self) -> impl Iterator<Item = ([f64; N], f64)> + '_ {
        self.entries
            .iter()
            .map(|(k, w)| (k.map(f64::from_bits), *w))
    }

    /// Heap bytes.
    pub fn size(&self) -> usize {
        self.entries.capacity() * size_of::<([u64; N], f64)>()
    }
}

/// Checks one (frequency, recency, t) row of a BG/NBD or Pareto/NBD fit.
pub fn check_frt(x: f64, tx: f64, t: f64) -> Result<(), String> {
    if !(x >= 0.0 && tx >= 0.0 && t >= 0.0 && x.is_finite() && tx.is_finite() && t.is_finite()) {
        return Err(format!(
            "frequency, recency and t must be finite and >= 0, got ({x}, {tx}, {t})"
        ));
    }
    if tx > t {
        return Err(format!("recency ({tx}) must not exceed t ({t})"));
    }
    if x == 0.0 && tx != 0.0 {
        return Err(format!("recency must be 0 when frequency is 0, got {tx}"));
    }
    Ok(())
}

/// The result of a fit: parameters in the model's order and the log-likelihood summed over rows.
#[derive(Debug, Clone, PartialEq)]
pub struct Fit {
    pub params: Vec<f64>,
    pub log_likelihood: f64,
    pub iterations: usize,
    /// False when the optimiser stopped without meeting its gradient test: the parameters are
    /// the best point reached (often at a boundary), and predictions from them are not reliable.
    pub converged: bool,
}

impl Fit {
    fn from_minimum(m: &Minimum, total_weight: f64) -> Self {
        Fit {
            params: m.x.iter().map(|v| v.exp()).collect(),
            log_likelihood: -m.value * total_weight,
            iterations: m.iterations,
            converged: m.converged,
        }
    }
}

/// Runs BFGS from each start in turn until one converges; when none does, the best point
/// reached (lowest objective) with `converged = false`.
fn fit_from_starts(
    name: &str,
    starts: &[Vec<f64>],
    total_weight: f64,
    f: &mut dyn FnMut(&[f64], &mut [f64]) -> f64,
    opts: Options,
) -> Result<Fit, String> {
    let mut best: Option<Minimum> = None;
    let mut last_err = String::new();
    for s in starts {
        match bfgs(f, s, opts) {
            Ok(m) if m.converged => return Ok(Fit::from_minimum(&m, total_weight)),
            Ok(m) => {
                let finite = m.value.is_finite() && m.x.iter().all(|v| v.exp().is_finite());
                if finite && best.as_ref().is_none_or(|b| m.value < b.value) {
                    best = Some(m);
                }
            }
            Err(e) => last_err = e,
        }
    }
    let m = best.ok_or_else(|| format!("{name} failed: {last_err}"))?;
    Ok(Fit::from_minimum(&m, total_weight))
}

/// A partial log-likelihood and gradient.
type Partial<const K: usize> = (f64, [f64; K]);
/// Runs of equal frequency (value, first row, end row) and tasks (ranges of runs).
type RunsAndTasks = (Vec<(f64, usize, usize)>, Vec<(usize, usize)>);

/// Evaluates `f` over fixed task ranges (on several threads for large inputs) and adds the
/// partial results in task order, so sums do not depend on the thread count.
fn par_sum<const K: usize>(
    tasks: &[(usize, usize)],
    rows: usize,
    f: impl Fn(usize, usize) -> (f64, [f64; K]) + Sync,
) -> (f64, [f64; K]) {
    let helpers = if rows < 50_000 {
        Helpers(0)
    } else {
        Helpers::borrow(tasks.len().saturating_sub(1))
    };
    let parts: Vec<(f64, [f64; K])> = if helpers.0 == 0 {
        tasks.iter().map(|&(lo, hi)| f(lo, hi)).collect()
    } else {
        let next = std::sync::atomic::AtomicUsize::new(0);
        let results: Vec<std::sync::Mutex<Option<Partial<K>>>> =
            tasks.iter().map(|_| std::sync::Mutex::new(None)).collect();
        let work = || {
            loop {
                let k = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                let Some(&(lo, hi)) = tasks.get(k) else { break };
                *results[k].lock().expect("no panics") = Some(f(lo, hi));
            }
        };
        std::thread::scope(|s| {
            for _ in 0..helpers.0 {
                s.spawn(work);
            }
            // The calling thread works too.
            work();
        });
        results
            .into_iter()
            .map(|m| m.into_inner().expect("no panics").expect("computed"))
            .collect()
    };
    let (mut v, mut g) = (0.0, [0.0f64; K]);
    for (pv, pg) in parts {
        v += pv;
        for k in 0..K {
            g[k] += pg[k];
        }
    }
    (v, g)
}

/// Runs of equal first values in sorted rows, and about 16 tasks of whole runs with similar row
/// counts.
fn runs_and_tasks<const N: usize>(rows: &[([f64; N], f64)]) -> RunsAndTasks {
    let mut runs: Vec<(f64, usize, usize)> = vec![];
    for (i, (r, _)) in rows.iter().enumerate() {
        match runs.last_mut() {
            Some(run) if run.0 == r[0] => run.2 = i + 1,
            _ => runs.push((r[0], i, i + 1)),
        }
    }
    let target = rows.len().div_ceil(16).max(1);
    let mut tasks = vec![];
    let (mut lo, mut acc) = (0usize, 0usize);
    for (k, r) in runs.iter().enumerate() {
        acc += r.2 - r.1;
        if acc >= target {
            tasks.push((lo, k + 1));
            lo = k + 1;
            acc = 0;
        }
    }
    if lo < runs.len() {
        tasks.push((lo, runs.len()));
    }
    (runs, tasks)
}

/// Fits on an evenly spaced subsample of large inputs first; its optimum and curvature
/// warm-start the full fit. None when the input is small or the warm fit fails.
fn warm_fit(
    rows: usize,
    total: f64,
    starts: &[Vec<f64>],
    sample: &mut dyn FnMut(&[f64], &mut [f64]) -> f64,
    full: &mut dyn FnMut(&[f64], &mut [f64]) -> f64,
    opts: Options,
) -> Option<Fit> {
    if rows <= 40_000 {
        return None;
    }
    let w = starts
        .iter()
        .find_map(|s| bfgs(sample, s, opts).ok().filter(|m| m.converged))?;
    let m = super::optimize::bfgs_from(full, &w.x, Some(&w.inverse_hessian), opts)
        .ok()
        .filter(|m| m.converged)?;
    Some(Fit::from_minimum(&m, total))
}

/// Every `rows / 20_000`-th row, for the warm start.
fn subsample<const N: usize>(rows: &[([f64; N], f64)]) -> Vec<([f64; N], f64)> {
    rows.iter()
        .step_by((rows.len() / 20_000).max(1))
        .cloned()
        .collect()
}

pub mod bgnbd {
    use super::*;

    /// Rows grouped by frequency (the per-frequency terms are computed once per evaluation), with
    /// `t` and `tx` as indices into their distinct values (whose logarithms are computed once per
    /// evaluation: day-granular data has a few thousand distinct values among millions of rows).
    struct Data {
        /// (frequency, start, end) runs into the row vectors.
        runs: Vec<(f64, usize, usize)>,
        t_idx: Vec<u32>,
        tx_idx: Vec<u32>,
        w: Vec<f64>,
        t_vals: Vec<f64>,
        tx_vals: Vec<f64>,
        total: f64,
        /// Run ranges evaluated as one task each (fixed, so sums do not depend on thread count).
        chunks: Vec<(usize, usize)>,
    }

    /// The distinct values (in first-seen order) and each value's index among them.
    fn distinct_index(values: impl Iterator<Item = f64>) -> (Vec<f64>, Vec<u32>) {
        let mut seen: HashMap<u64, u32> = HashMap::default();
        let mut distinct = vec![];
        let idx = values
            .map(|v| {
                *seen.entry(v.to_bits()).or_insert_with(|| {
                    distinct.push(v);
                    (distinct.len() - 1) as u32
                })
            })
            .collect();
        (distinct, idx)
    }

    fn prepare(rows: &[([f64; 3], f64)]) -> Data {
        let (runs, chunks) = runs_and_tasks(rows);
        let (t_vals, t_idx) = distinct_index(rows.iter().map(|r| r.0[2]));
        let (tx_vals, tx_idx) = distinct_index(rows.iter().map(|r| r.0[1]));
        let w: Vec<f64> = rows.iter().map(|r| r.1).collect();
        Data {
            runs,
            t_idx,
            tx_idx,
            total: w.iter().sum(),
            w,
            t_vals,
            tx_vals,
            chunks,
        }
    }

    /// Per-evaluation tables: ln(alpha + v) and 1 / (alpha + v) for the distinct t and tx.
    struct Tables {
        ln_t: Vec<f64>,
        inv_t: Vec<f64>,
        ln_tx: Vec<f64>,
        inv_tx: Vec<f64>,
    }

    /// Log-likelihood and gradient (with respect to r, alpha, a, b) of the runs `runs`.
    fn partial(
        d: &Data,
        tb: &Tables,
        p: [f64; 4],
        runs: &[(f64, usize, usize)],
    ) -> (f64, [f64; 4]) {
        let [r, alpha, a, b] = p;
        let (ln_alpha, ln_a) = (alpha.ln(), a.ln());
        let (lg_r, lg_ab, lg_b) = (ln_gamma(r), ln_gamma(a + b), ln_gamma(b));
        let (dg_r, dg_ab, dg_b) = (digamma(r), digamma(a + b), digamma(b));
        let mut ll = 0.0;
        let mut g = [0.0f64; 4];
        for &(x, lo, hi) in runs {
            let rx = r + x;
            let a1 = ln_gamma(rx) - lg_r + r * ln_alpha;
            let a2 = lg_ab + ln_gamma(b + x) - lg_b - ln_gamma(a + b + x);
            let dg_abx = digamma(a + b + x);
            let mut run_w = 0.0;
            if x > 0.0 {
                let c4 = ln_a - (b + x - 1.0).ln();
                let inv_bx1 = 1.0 / (b + x - 1.0);
                let (mut s_ll, mut s_r, mut s_alpha, mut s_w4) = (0.0, 0.0, 0.0, 0.0);
                for i in lo..hi {
                    let (ti, xi, w) = (d.t_idx[i] as usize, d.tx_idx[i] as usize, d.w[i]);
                    run_w += w;
                    let a3 = -rx * tb.ln_t[ti];
                    let a4 = c4 - rx * tb.ln_tx[xi];
                    // ln(e^a3 + e^a4) and the weights of the two terms.
                    let diff = a4 - a3;
                    let e = (-diff.abs()).exp();
                    let (w3, w4) = if diff > 0.0 {
                        (e / (1.0 + e), 1.0 / (1.0 + e))
                    } else {
                        (1.0 / (1.0 + e), e / (1.0 + e))
                    };
                    s_ll += w * (a3.max(a4) + (1.0 + e).ln());
                    s_r -= w * (w3 * tb.ln_t[ti] + w4 * tb.ln_tx[xi]);
                    s_alpha -= w * (w3 * tb.inv_t[ti] + w4 * tb.inv_tx[xi]);
                    s_w4 += w * w4;
                }
                ll += s_ll;
                g[0] += s_r;
                g[1] += rx * s_alpha;
                g[2] += s_w4 / a;
                g[3] -= s_w4 * inv_bx1;
            } else {
                let (mut s_lt, mut s_inv) = (0.0, 0.0);
                for i in lo..hi {
                    let (ti, w) = (d.t_idx[i] as usize, d.w[i]);
                    run_w += w;
                    s_lt += w * tb.ln_t[ti];
                    s_inv += w * tb.inv_t[ti];
                }
                ll -= rx * s_lt;
                g[0] -= s_lt;
                g[1] -= rx * s_inv;
            }
            ll += run_w * (a1 + a2);
            g[0] += run_w * (digamma(rx) - dg_r + ln_alpha);
            g[1] += run_w * r / alpha;
            g[2] += run_w * (dg_ab - dg_abx);
            g[3] += run_w * (dg_ab + digamma(b + x) - dg_b - dg_abx);
        }
        (ll, g)
    }

    /// Mean negative log-likelihood at log-parameters `lp` = ln(r, alpha, a, b), with its gradient
    /// with respect to `lp`. Large inputs are evaluated on several threads; the partial sums are
    /// added in a fixed order.
    fn objective(d: &Data, lp: &[f64], grad: &mut [f64]) -> f64 {
        let p = [lp[0].exp(), lp[1].exp(), lp[2].exp(), lp[3].exp()];
        let alpha = p[1];
        let table = |vals: &[f64]| -> (Vec<f64>, Vec<f64>) {
            vals.iter()
                .map(|v| ((alpha + v).ln(), 1.0 / (alpha + v)))
                .unzip()
        };
        let (ln_t, inv_t) = table(&d.t_vals);
        let (ln_tx, inv_tx) = table(&d.tx_vals);
        let tb = Tables {
            ln_t,
            inv_t,
            ln_tx,
            inv_tx,
        };
        let (ll, g) = par_sum::<4>(&d.chunks, d.w.len(), |lo, hi| {
            partial(d, &tb, p, &d.runs[lo..hi])
        });
        for k in 0..4 {
            grad[k] = -g[k] * p[k] / d.total;
        }
        -ll / d.total
    }

    /// The objective over collapsed rows (sorted by frequency), for tests.
    pub fn objective_on_rows(rows: &[([f64; 3], f64)], lp: &[f64], grad: &mut [f64]) -> f64 {
        objective(&prepare(rows), lp, grad)
    }

    /// Maximum-likelihood (r, alpha, a, b). Large inputs are first fitted on an evenly spaced
    /// subsample, whose optimum and curvature warm-start the full fit; cold starts are the
    /// fallback.
    pub fn fit(data: &Collapsed<3>) -> Result<Fit, String> {
        if data.is_empty() {
            return Err("bgnbd_fit needs at least one customer".into());
        }
        let t0 = std::time::Instant::now();
        let rows = data.rows();
        let d = prepare(&rows);
        log::debug!("bgnbd_fit: rows sorted and indexed in {:?}", t0.elapsed());
        let mean_t = rows.iter().map(|([_, _, t], w)| t * w).sum::<f64>() / d.total;
        let la = mean_t.max(1e-3).ln();
        let starts = [
            vec![0.0, 0.0, 0.0, 0.0],
            vec![0.0, la, 0.0, 0.0],
            vec![-1.0, la - 1.0, 0.0, 1.0],
        ];
        let opts = Options::default();
        let evals = std::cell::Cell::new(0usize);
        let mut f = |lp: &[f64], g: &mut [f64]| {
            evals.set(evals.get() + 1);
            objective(&d, lp, g)
        };
        let ds = prepare(&subsample(&rows));
        let t1 = std::time::Instant::now();
        let warm = warm_fit(
            rows.len(),
            d.total,
            &starts,
            &mut |lp, g| objective(&ds, lp, g),
            &mut f,
            opts,
        );
        log::debug!(
            "bgnbd_fit: {} full evaluations in {:?}",
            evals.get(),
            t1.elapsed()
        );
        if let Some(fit) = warm {
            return Ok(fit);
        }
        fit_from_starts("bgnbd_fit", &starts, d.total, &mut f, opts)
    }

    /// Log-likelihood of one row (for tests and reporting).
    pub fn log_likelihood(p: &[f64; 4], x: f64, tx: f64, t: f64) -> f64 {
        let lp = p.map(f64::ln);
        let d = prepare(&[([x, tx, t], 1.0)]);
        -objective(&d, &lp, &mut [0.0; 4])
    }

    /// P(alive | x, tx, T), as `lifetimes.BetaGeoFitter.conditional_probability_alive`.
    pub fn p_alive(p: &[f64; 4], x: f64, tx: f64, t: f64) -> f64 {
        let [r, alpha, a, b] = *p;
        if x == 0.0 {
            return 1.0;
        }
        let log_div = (r + x) * ((alpha + t) / (alpha + tx)).ln() + (a / (b + x - 1.0)).ln();
        1.0 / (1.0 + log_div.exp())
    }

    /// Expected purchases in `(T, T + horizon]`, as
    /// `lifetimes.BetaGeoFitter.conditional_expected_number_of_purchases_up_to_time`.
    pub fn expected_purchases(p: &[f64; 4], horizon: f64, x: f64, tx: f64, t: f64) -> f64 {
        let [r, alpha, a, b] = *p;
        if horizon == 0.0 {
            return 0.0;
        }
        let (ha, hb, hc) = (r + x, b + x, a + b + x - 1.0);
        let z = horizon / (alpha + t + horizon);
        // ln 2F1(ha, hb; hc; z); when hc <= 0 (a + b + x < 1) use Euler's transformation.
        let ln_hyp = if hc > 0.0 {
            ln_hyp2f1(ha, hb, hc, z)
        } else {
            f64::NAN
        };
        let first = (a + b + x - 1.0) / (a - 1.0);
        let second = -(ln_hyp + (r + x) * ((alpha + t) / (alpha + horizon + t)).ln()).exp_m1();
        let numerator = first * second;
        let denominator = if x > 0.0 {
            1.0 + (a / (b + x - 1.0)) * ((alpha + t) / (alpha + tx)).powf(r + x)
        } else {
            1.0
        };
        numerator / denominator
    }
}

pub mod pareto_nbd {
    use super::*;

    /// ln A_0 of Fader & Hardie's note ("A Note on Deriving the Pareto/NBD Model"):
    /// `A_0 = F(tx) / (m + tx)^(r+s+x) - F(T) / (m + T)^(r+s+x)` with `m = max(alpha, beta)` and
    /// `F(u) = 2F1(r+s+x, k; r+s+x+1; |alpha-beta| / (m+u))`, `k = r+x` if alpha < beta else `s+1`.
    fn ln_a0(p: &[f64; 4], x: f64, tx: f64, t: f64) -> f64 {
        let [r, alpha, s, beta] = *p;
        let (m, k) = if alpha < beta {
            (beta, r + x)
        } else {
            (alpha, s + 1.0)
        };
        let diff = (alpha - beta).abs();
        let rsx = r + s + x;
        let term = |u: f64| ln_hyp2f1(rsx, k, rsx + 1.0, diff / (m + u)) - rsx * (m + u).ln();
        log_sub_exp(term(tx), term(t))
    }

    /// Log-likelihood of one row, as `lifetimes.ParetoNBDFitter._conditional_log_likelihood`.
    pub fn log_likelihood(p: &[f64; 4], x: f64, tx: f64, t: f64) -> f64 {
        let [r, alpha, s, beta] = *p;
        let a1 = ln_gamma(r + x) - ln_gamma(r) + r * alpha.ln() + s * beta.ln();
        let a2 = log_add_exp(
            -(r + x) * (alpha + t).ln() - s * (beta + t).ln(),
            s.ln() + ln_a0(p, x, tx, t) - (r + s + x).ln(),
        );
        a1 + a2
    }

    fn mean_nll(rows: &[([f64; 3], f64)], total: f64, lp: &[f64]) -> f64 {
        let p = [lp[0].exp(), lp[1].exp(), lp[2].exp(), lp[3].exp()];
        let ll: f64 = rows
            .iter()
            .map(|([x, tx, t], w)| w * log_likelihood(&p, *x, *tx, *t))
            .sum();
        -ll / total
    }

    /// Maximum-likelihood (r, alpha, s, beta).
    pub fn fit(data: &Collapsed<3>) -> Result<Fit, String> {
        if data.is_empty() {
            return Err("pareto_nbd_fit needs at least one customer".into());
        }
        let rows = data.rows();
        let total: f64 = rows.iter().map(|r| r.1).sum();
        let mean_t = rows.iter().map(|([_, _, t], w)| t * w).sum::<f64>() / total;
        let la = mean_t.max(1e-3).ln();
        let starts = [vec![0.0, 0.0, 0.0, 0.0], vec![0.0, la, 0.0, la]];
        let mut f = |lp: &[f64], g: &mut [f64]| {
            numeric_gradient(&mut |q| mean_nll(&rows, total, q), lp, 1e-5, g);
            mean_nll(&rows, total, lp)
        };
        fit_from_starts(
            "pareto_nbd_fit",
            &starts,
            total,
            &mut f,
            Options {
                gtol: 1e-8,
                stall_gtol: 1e-5,
                max_iterations: 2000,
            },
        )
    }

    /// P(alive | x, tx, T), as `lifetimes.ParetoNBDFitter.conditional_probability_alive`.
    pub fn p_alive(p: &[f64; 4], x: f64, tx: f64, t: f64) -> f64 {
        let [r, alpha, s, beta] = *p;
        let ln = s.ln() - (r + s + x).ln()
            + (r + x) * (alpha + t).ln()
            + s * (beta + t).ln()
            + ln_a0(p, x, tx, t);
        1.0 / (1.0 + ln.exp())
    }
}

pub mod gamma_gamma {
    use super::*;

    /// Checks one (frequency, monetary_value) row; false for rows the fit skips (frequency 0 or
    /// monetary_value <= 0, as lifetimes requires).
    pub fn usable(x: f64, m: f64) -> bool {
        x > 0.0 && m > 0.0 && x.is_finite() && m.is_finite()
    }

    /// Rows grouped by frequency, with ln(m) and x m precomputed.
    struct Data {
        runs: Vec<(f64, usize, usize)>,
        tasks: Vec<(usize, usize)>,
        ln_m: Vec<f64>,
        xm: Vec<f64>,
        w: Vec<f64>,
        total: f64,
    }

    fn prepare(rows: &[([f64; 2], f64)]) -> Data {
        let (runs, tasks) = runs_and_tasks(rows);
        let w: Vec<f64> = rows.iter().map(|r| r.1).collect();
        Data {
            runs,
            tasks,
            ln_m: rows.iter().map(|([_, m], _)| m.ln()).collect(),
            xm: rows.iter().map(|([x, m], _)| x * m).collect(),
            total: w.iter().sum(),
            w,
        }
    }

    /// Mean negative log-likelihood at ln(p, q, v) and its gradient, as
    /// `lifetimes.GammaGammaFitter._negative_log_likelihood`: per row
    /// `lnΓ(px+q) - lnΓ(px) - lnΓ(q) + q ln v + (px-1) ln m + px ln x - (px+q) ln(xm+v)`.
    fn objective(d: &Data, lp: &[f64], grad: &mut [f64]) -> f64 {
        let [p, q, v] = [lp[0].exp(), lp[1].exp(), lp[2].exp()];
        let (lg_q, dg_q, ln_v) = (ln_gamma(q), digamma(q), v.ln());
        let (ll, g) = par_sum::<3>(&d.tasks, d.w.len(), |lo, hi| {
            let (mut ll, mut g) = (0.0, [0.0f64; 3]);
            for &(x, a, b) in &d.runs[lo..hi] {
                let px = p * x;
                let (dg_pxq, ln_x) = (digamma(px + q), x.ln());
                let c = ln_gamma(px + q) - ln_gamma(px) - lg_q + q * ln_v + px * ln_x;
                let (mut sw, mut s_lnm, mut s_l, mut s_inv) = (0.0, 0.0, 0.0, 0.0);
                for i in a..b {
                    let w = d.w[i];
                    let u = d.xm[i] + v;
                    sw += w;
                    s_lnm += w * d.ln_m[i];
                    s_l += w * u.ln();
                    s_inv += w / u;
                }
                ll += sw * c + (px - 1.0) * s_lnm - (px + q) * s_l;
                g[0] += x * (sw * (dg_pxq - digamma(px) + ln_x) + s_lnm - s_l);
                g[1] += sw * (dg_pxq - dg_q + ln_v) - s_l;
                g[2] += sw * q / v - (px + q) * s_inv;
            }
            (ll, g)
        });
        let pr = [p, q, v];
        for k in 0..3 {
            grad[k] = -g[k] * pr[k] / d.total;
        }
        -ll / d.total
    }

    /// Maximum-likelihood (p, q, v).
    pub fn fit(data: &Collapsed<2>) -> Result<Fit, String> {
        if data.is_empty() {
            return Err(
                "gamma_gamma_fit needs at least one customer with frequency > 0 and monetary_value > 0"
                    .into(),
            );
        }
        let rows = data.rows();
        let d = prepare(&rows);
        let mean_m = rows.iter().map(|([_, m], w)| m * w).sum::<f64>() / d.total;
        let lm = mean_m.ln();
        let starts = [vec![0.0, 0.0, 0.0], vec![0.0, 0.0, lm], vec![1.0, 1.0, lm]];
        let opts = Options {
            gtol: 1e-11,
            ..Options::default()
        };
        let mut f = |lp: &[f64], g: &mut [f64]| objective(&d, lp, g);
        let ds = prepare(&subsample(&rows));
        if let Some(fit) = warm_fit(
            rows.len(),
            d.total,
            &starts,
            &mut |lp, g| objective(&ds, lp, g),
            &mut f,
            opts,
        ) {
            return Ok(fit);
        }
        fit_from_starts("gamma_gamma_fit", &starts, d.total, &mut f, opts)
    }

    /// E[spend per transaction | x, m], as
    /// `lifetimes.GammaGammaFitter.conditional_expected_average_profit`.
    pub fn expected_value(p: &[f64; 3], x: f64, m: f64) -> f64 {
        let [p, q, v] = *p;
        p * (v + x * m) / (p * x + q - 1.0)
    }
}

/// Discounted customer lifetime value over `months` months, as
/// `lifetimes.GammaGammaFitter.customer_lifetime_value` with `freq='D'` (BG/NBD fitted on days):
/// the sum over months i of `value x (E[N(30 i)] - E[N(30 (i-1))]) / (1 + rate)^i`.
#[allow(clippy::too_many_arguments)] // the arguments of lifetimes' customer_lifetime_value
pub fn clv(
    bg: &[f64; 4],
    gg: &[f64; 3],
    x: f64,
    tx: f64,
    t: f64,
    m: f64,
    months: u32,
    monthly_discount_rate: f64,
) -> f64 {
    let value = gamma_gamma::expected_value(gg, x, m);
    let mut total = 0.0;
    let mut prev = 0.0;
    for i in 1..=months {
        let cum = bgnbd::expected_purchases(bg, 30.0 * i as f64, x, tx, t);
        total += value * (cum - prev) / (1.0 + monthly_discount_rate).powi(i as i32);
        prev = cum;
    }
    total
}

#[cfg(test)]
mod tests {
    /// Concurrent fits never hold more helper threads than the cores less one, and give them
    /// all back.
    #[test]
    fn fits_share_a_bounded_pool_of_helpers() {
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        let in_use = std::sync::atomic::AtomicUsize::new(0);
        let peak = std::sync::atomic::AtomicUsize::new(0);
        std::thread::scope(|s| {
            for _ in 0..16 {
                s.spawn(|| {
                    for _ in 0..200 {
                        let h = Helpers::borrow(8);
                        let now = in_use.fetch_add(h.0, std::sync::atomic::Ordering::SeqCst) + h.0;
                        peak.fetch_max(now, std::sync::atomic::Ordering::SeqCst);
                        std::thread::yield_now();
                        in_use.fetch_sub(h.0, std::sync::atomic::Ordering::SeqCst);
                    }
                });
            }
        });
        assert!(peak.into_inner() <= cores.saturating_sub(1));
        assert_eq!(Helpers::borrow(usize::MAX).0, cores.saturating_sub(1));
    }

    use super::*;
    use crate::rfm::kernel::summarize;
    use crate::support::time::days_from_civil;

    /// The CDNOW sample summarised with lifetimes' rules: (frequency, recency, t) in weeks and
    /// monetary value, per customer, as_of 1997-09-30.
    fn cdnow() -> Vec<(f64, f64, f64, f64)> {
        let text = include_str!("../../../sample/data/cdnow/CDNOW_sample.txt");
        let mut by_customer: std::collections::BTreeMap<u32, Vec<(i32, f64)>> = Default::default();
        let as_of = days_from_civil(1997, 9, 30);
        for line in text.lines() {
            let f: Vec<&str> = line.split_whitespace().collect();
            let id: u32 = f[1].parse().unwrap();
            let d: i64 = f[2].parse().unwrap();
            let day = days_from_civil(d / 10000, d / 100 % 100, d % 100);
            let amount: f64 = f[4].parse().unwrap();
            if day <= as_of {
                by_customer
                    .entry(id)
                    .or_default()
                    .push((day as i32, amount));
            }
        }
        by_customer
            .into_values()
            .map(|mut o| {
                let r = summarize(&mut o, as_of).unwrap();
                (r.frequency, r.recency / 7.0, r.t / 7.0, r.monetary_value)
            })
            .collect()
    }

    fn sig4(got: f64, want: f64) -> bool {
        // Equal to 4 significant digits.
        let scale = 10f64.powi(want.abs().log10().floor() as i32 - 3);
        ((got - want) / scale).abs() <= 0.5 + 1e-9
    }

    fn frt(rows: &[(f64, f64, f64, f64)]) -> Collapsed<3> {
        let mut c = Collapsed::default();
        for (x, tx, t, _) in rows {
            c.add([*x, *tx, *t], 1.0);
        }
        c
    }

    #[test]
    fn cdnow_bgnbd_matches_the_paper() {
        let rows = cdnow();
        assert_eq!(rows.len(), 2357);
        let fit = bgnbd::fit(&frt(&rows)).unwrap();
        let p = &fit.params;
        for (got, want) in p.iter().zip([0.2426, 4.4135, 0.7929, 2.4258]) {
            assert!(sig4(*got, want), "{p:?}");
        }
        assert!(
            (fit.log_likelihood - -9582.43).abs() < 0.01,
            "{}",
            fit.log_likelihood
        );
        let pa = bgnbd::p_alive(&[p[0], p[1], p[2], p[3]], 2.0, 30.43, 38.86);
        assert!(sig4(pa, 0.7266), "{pa}");
    }

    #[test]
    fn cdnow_pareto_nbd_matches_the_published_values() {
        let fit = pareto_nbd::fit(&frt(&cdnow())).unwrap();
        let p = &fit.params;
        for (got, want) in p.iter().zip([0.5533, 10.58, 0.6062, 11.67]) {
            assert!(sig4(*got, want), "{p:?}");
        }
        assert!(
            (fit.log_likelihood - -9594.98).abs() < 0.01,
            "{}",
            fit.log_likelihood
        );
    }

    #[test]
    fn cdnow_gamma_gamma_matches_the_published_values() {
        let mut c = Collapsed::default();
        let mut n = 0;
        for (x, _, _, m) in cdnow() {
            if gamma_gamma::usable(x, m) {
                c.add([x, m], 1.0);
                n += 1;
            }
        }
        assert_eq!(n, 946);
        let fit = gamma_gamma::fit(&c).unwrap();
        for (got, want) in fit.params.iter().zip([6.2496, 3.7442, 15.4435]) {
            assert!(sig4(*got, want), "{:?}", fit.params);
        }
    }

    #[test]
    fn gradients_match_finite_differences() {
        let rows = cdnow();
        let mut c = frt(&rows[..300]);
        c.add([0.0, 0.0, 5.0], 2.0);
        let p = [0.3, 5.0, 0.9, 2.2];
        // BG/NBD: compare the analytic gradient of the mean NLL with central differences.
        let total: f64 = c.rows().iter().map(|r| r.1).sum();
        let nll = |q: &[f64]| -> f64 {
            let pp = [q[0].exp(), q[1].exp(), q[2].exp(), q[3].exp()];
            -c.rows()
                .iter()
                .map(|([x, tx, t], w)| w * bgnbd::log_likelihood(&pp, *x, *tx, *t))
                .sum::<f64>()
                / total
        };
        let lp = p.map(f64::ln);
        let mut num = [0.0; 4];
        crate::models::optimize::numeric_gradient(&mut |q| nll(q), &lp, 1e-6, &mut num);
        let mut ana = [0.0; 4];
        let d = c.rows();
        let data = bgnbd_objective_for_test(&d, &lp, &mut ana);
        assert!((data - nll(&lp)).abs() < 1e-12);
        for k in 0..4 {
            assert!((num[k] - ana[k]).abs() < 1e-7, "{k}: {num:?} vs {ana:?}");
        }
    }

    fn bgnbd_objective_for_test(rows: &[([f64; 3], f64)], lp: &[f64], g: &mut [f64]) -> f64 {
        bgnbd::objective_on_rows(rows, lp, g)
    }

    #[test]
    fn p_alive_and_expectations_by_hand() {
        let p = [0.243, 4.414, 0.793, 2.426];
        // x = 0: alive for sure; expected purchases from the closed form with hyp2f1(r, b; a+b-1; z).
        assert_eq!(bgnbd::p_alive(&p, 0.0, 0.0, 10.0), 1.0);
        // Hand formula: 1 / (1 + a/(b+x-1) * ((alpha+T)/(alpha+tx))^(r+x)).
        let want = 1.0
            / (1.0 + 0.793 / (2.426 + 1.0) * ((4.414 + 38.86) / (4.414 + 30.43f64)).powf(2.243));
        assert!((bgnbd::p_alive(&p, 2.0, 30.43, 38.86) - want).abs() < 1e-15);
        // A horizon of 0 buys nothing; expected purchases grow with the horizon.
        assert_eq!(bgnbd::expected_purchases(&p, 0.0, 2.0, 30.43, 38.86), 0.0);
        let e10 = bgnbd::expected_purchases(&p, 10.0, 2.0, 30.43, 38.86);
        let e20 = bgnbd::expected_purchases(&p, 20.0, 2.0, 30.43, 38.86);
        assert!(e10 > 0.0 && e20 > e10, "{e10} {e20}");
        // Gamma-Gamma expected value by hand.
        let g = [6.25, 3.74, 15.44];
        assert!(
            (gamma_gamma::expected_value(&g, 2.0, 30.0)
                - 6.25 * (15.44 + 60.0) / (12.5 + 3.74 - 1.0))
                .abs()
                < 1e-12
        );
        // CLV with one month: value x E[N(30)] / 1.01.
        let clv1 = clv(&p, &g, 2.0, 30.43, 38.86, 30.0, 1, 0.01);
        let want = gamma_gamma::expected_value(&g, 2.0, 30.0)
            * bgnbd::expected_purchases(&p, 30.0, 2.0, 30.43, 38.86)
            / 1.01;
        assert!((clv1 - want).abs() < 1e-12);
    }

    #[test]
    fn collapsing_does_not_depend_on_order_or_split() {
        let rows = cdnow();
        let mut whole = Collapsed::<3>::default();
        for (x, tx, t, _) in &rows {
            whole.add([*x, *tx, *t], 1.0);
        }
        let (mut a, mut b) = (Collapsed::<3>::default(), Collapsed::<3>::default());
        for (i, (x, tx, t, _)) in rows.iter().rev().enumerate() {
            if i % 3 == 0 {
                a.add([*x, *tx, *t], 1.0)
            } else {
                b.add([*x, *tx, *t], 1.0)
            }
        }
        let mut ab = a.clone();
        ab.merge(&b);
        let mut ba = b.clone();
        ba.merge(&a);
        assert_eq!(ab.rows(), whole.rows());
        assert_eq!(ba.rows(), whole.rows());
        assert_eq!(bgnbd::fit(&ab).unwrap(), bgnbd::fit(&whole).unwrap());
    }
}

#[cfg(test)]
mod simulation {
    use super::*;
    use rand::{Rng, SeedableRng};
    use rand_chacha::ChaCha8Rng;
    use rand_distr::{Beta, Distribution, Exp, Gamma};

    /// Continuous-time BG/NBD draws: per customer lambda ~ Gamma(r, 1/alpha), p ~ Beta(a, b),
    /// observed for T ~ U(20, 52); purchases at Poisson rate lambda, dropout after each repeat
    /// purchase with probability p.
    fn simulate(p: [f64; 4], n: usize, seed: u64) -> Collapsed<3> {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let rate = Gamma::new(p[0], 1.0 / p[1]).unwrap();
        let drop = Beta::new(p[2], p[3]).unwrap();
        let mut c = Collapsed::default();
        for _ in 0..n {
            let lambda: f64 = rate.sample(&mut rng);
            let q: f64 = drop.sample(&mut rng);
            let t_obs = rng.random_range(20.0..52.0);
            let gap = Exp::new(lambda.max(1e-12)).unwrap();
            let (mut t, mut x, mut tx) = (0.0, 0.0, 0.0);
            loop {
                t += gap.sample(&mut rng);
                if t > t_obs {
                    break;
                }
                x += 1.0;
                tx = t;
                if rng.random::<f64>() < q {
                    break;
                }
            }
            c.add([x, tx, t_obs], 1.0);
        }
        c
    }

    /// Large inputs take the warm-start path (subsample first): the answer is still the full
    /// data's optimum (zero gradient there).
    #[test]
    fn warm_started_fit_is_the_full_optimum() {
        let data = simulate([0.7, 8.0, 0.8, 2.5], 60_000, 9);
        assert!(data.rows().len() > 40_000);
        let fit = bgnbd::fit(&data).unwrap();
        let lp: Vec<f64> = fit.params.iter().map(|v| v.ln()).collect();
        let mut g = [0.0; 4];
        bgnbd::objective_on_rows(&data.rows(), &lp, &mut g);
        assert!(g.iter().all(|v| v.abs() < 1e-7), "{g:?}");
        let mut gg = Collapsed::<2>::default();
        let mut rng = ChaCha8Rng::seed_from_u64(5);
        for _ in 0..50_000 {
            let x = rng.random_range(1..20) as f64;
            let m: f64 = Gamma::new(4.0, 10.0).unwrap().sample(&mut rng);
            gg.add([x, m], 1.0);
        }
        let fit = gamma_gamma::fit(&gg).unwrap();
        assert!(fit.params.iter().all(|v| v.is_finite() && *v > 0.0));
    }

    /// The truth lies inside the fit's 99.9% likelihood-ratio region (chi-square with 4 degrees
    /// of freedom: 2 x gap < 18.47), for several seeds.
    #[test]
    fn fit_recovers_exact_simulation() {
        let truth = [0.7, 8.0, 0.8, 2.5];
        for seed in [1, 2, 3] {
            let data = simulate(truth, 10_000, seed);
            let fit = bgnbd::fit(&data).unwrap();
            let ll_true: f64 = data
                .rows()
                .iter()
                .map(|([x, tx, t], w)| w * bgnbd::log_likelihood(&truth, *x, *tx, *t))
                .sum();
            let gap = fit.log_likelihood - ll_true;
            assert!(
                (0.0..18.47 / 2.0).contains(&gap),
                "seed {seed}: {:?}, gap {gap}",
                fit.params
            );
        }
    }
}

#[cfg(test)]
mod collapse {
    use super::*;

    /// The packed fast path (integer rows, unit weights) and the general path give the same
    /// distinct rows, weights and order.
    #[test]
    fn packed_and_general_paths_agree() {
        let mut ints = Collapsed::<3>::default();
        let mut general = Collapsed::<3>::default();
        let mut x = 0x2545F4914F6CDD1Du64;
        for _ in 0..300_000 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let f = (x % 7) as f64;
            let t = (x >> 8) % 50 + 10;
            let r = if f == 0.0 { 0 } else { (x >> 20) % (t + 1) };
            ints.add([f, r as f64, t as f64], 1.0);
            general.add([f, r as f64, t as f64], 1.0);
        }
        general.add([1.0, 2.0, 3.0], 0.5); // a fractional weight forces the general path
        ints.add([1.0, 2.0, 3.0], 1.0);
        ints.add([1.0, 2.0, 3.0], 1.0);
        general.add([1.0, 2.0, 3.0], 1.5);
        assert!(ints.packed().is_some() && general.packed().is_none());
        assert_eq!(ints.rows(), general.rows());
    }
}
