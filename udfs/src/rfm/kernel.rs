/// Marks "no as_of seen".
pub const NONE: i64 = i64::MIN;

/// One customer's summary, in days; `monetary_value` in the amounts' own terms (see
/// [`Amount`]).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Rfm<M = f64> {
    pub frequency: f64,
    pub recency: f64,
    pub t: f64,
    pub monetary_value: M,
}

/// Digits a decimal mean keeps beyond the amounts' scale (DataFusion's `avg` of a DECIMAL).
pub const MEAN_EXTRA_SCALE: u32 = 4;

/// An order amount: a DOUBLE, or the unscaled value of a DECIMAL: an `i64` when its precision
/// is at most 18 (16-byte log entries with the day), an `i128` otherwise, summed exactly in an
/// `i128` either way (the mean is unscaled at [`MEAN_EXTRA_SCALE`] more digits, rounded half
/// away from zero).
pub trait Amount: Copy + Default + Send + Sync + 'static {
    /// What the amounts of a customer's repeat days are summed in.
    type Sum: Copy + Default;
    type Mean: Copy + Default + PartialEq + std::fmt::Debug;

    fn add(sum: &mut Self::Sum, x: Self);

    fn mean(sum: Self::Sum, n: u64) -> Self::Mean;

    fn total_cmp(&self, other: &Self) -> std::cmp::Ordering;
}

impl Amount for f64 {
    type Sum = f64;
    type Mean = f64;

    fn add(sum: &mut f64, x: Self) {
        *sum += x;
    }

    fn mean(sum: f64, n: u64) -> f64 {
        sum / n as f64
    }

    fn total_cmp(&self, other: &Self) -> std::cmp::Ordering {
        f64::total_cmp(self, other)
    }
}

/// No amount: `churn_risk` reads only the days, so its orders are 4 bytes, not 16.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct NoAmount;

impl Amount for NoAmount {
    type Sum = ();
    type Mean = ();

    fn add(_: &mut (), _: Self) {}

    fn mean(_: (), _: u64) {}

    fn total_cmp(&self, _: &Self) -> std::cmp::Ordering {
        std::cmp::Ordering::Equal
    }
}

impl Amount for i128 {
    type Sum = i128;
    type Mean = i128;

    fn add(sum: &mut i128, x: Self) {
        *sum = sum.saturating_add(x);
    }

    /// `sum / n` at 4 more digits, rounded half away from zero; saturates (beyond every
    /// DECIMAL(38), so the adapter reports it) when `sum` is that large.
    fn mean(sum: i128, n: u64) -> i128 {
        let scaled = sum.saturating_mul(10i128.pow(MEAN_EXTRA_SCALE));
        let n = n as i128;
        let (q, r) = (scaled / n, scaled % n);
        if 2 * r.abs() >= n {
            q + scaled.signum()
        } else {
            q
        }
    }

    fn total_cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.cmp(other)
    }
}

/// A DECIMAL of precision at most 18, summed in an `i128` like the wider ones.
impl Amount for i64 {
    type Sum = i128;
    type Mean = i128;

    fn add(sum: &mut i128, x: Self) {
        *sum = sum.saturating_add(x as i128);
    }

    fn mean(sum: i128, n: u64) -> i128 {
        <i128 as Amount>::mean(sum, n)
    }

    fn total_cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.cmp(other)
    }
}

/// Summarises one customer's orders (day, amount), all at or before `as_of_day`; None without
/// orders. Sorts `orders` in place.
pub fn summarize<A: Amount>(orders: &mut [(i32, A)], as_of_day: i64) -> Option<Rfm<A::Mean>> {
    if orders.is_empty() {
        return None;
    }
    orders.sort_unstable_by(|a, b| a.0.cmp(&b.0).then(a.1.total_cmp(&b.1)));
    let first = orders[0].0;
    let last = orders[orders.len() - 1].0;
    let mut repeat_days = 0u64;
    let mut repeat_amount = A::Sum::default();
    let mut prev = first;
    for &(day, amount) in orders.iter() {
        if day != prev {
            repeat_days += 1;
            prev = day;
        }
        if day != first {
            A::add(&mut repeat_amount, amount);
        }
    }
    let frequency = repeat_days as f64;
    Some(Rfm {
        frequency,
        recency: (last as i64 - first as i64) as f64,
        t: (as_of_day - first as i64) as f64,
        monetary_value: if repeat_days == 0 {
            A::Mean::default()
        } else {
            A::mean(repeat_amount, repeat_days)
        },
    })
}

/// `exp(-rate x days_since_last)` with `rate = frequency / recency` (days): how likely a
/// customer buying at its own pace would be to stay silent this long. None for one-time buyers.
pub fn churn_risk<M>(r: &Rfm<M>) -> Option<f64> {
    if r.frequency == 0.0 || r.recency <= 0.0 {
        return None;
    }
    let rate = r.frequency / r.recency;
    Some((-rate * (r.t - r.recency)).exp())
}
