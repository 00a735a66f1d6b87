/// Marks "no value" in `last`, `prev` and `as_of`.
pub const NONE: i64 = i64::MIN;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Thresholds {
    pub churn: i64,
    pub at_risk: i64,
    pub loyal_window: i64,
    pub loyal_min_orders: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stage {
    Prospect,
    New,
    Repeat,
    Loyal,
    AtRisk,
    Churned,
    Reactivated,
}

impl Stage {
    pub fn as_str(self) -> &'static str {
        match self {
            Stage::Prospect => "prospect",
            Stage::New => "new",
            Stage::Repeat => "repeat",
            Stage::Loyal => "loyal",
            Stage::AtRisk => "at_risk",
            Stage::Churned => "churned",
            Stage::Reactivated => "reactivated",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct State {
    /// Latest order at or before `as_of`.
    pub last: i64,
    /// Next-latest order (equal to `last` for two orders at the same instant).
    pub prev: i64,
    /// Orders at or before `as_of`.
    pub orders: u64,
    /// Orders in `(as_of - loyal_window, as_of]`.
    pub in_window: u64,
    /// The latest `as_of` seen (constant within a group in normal use).
    pub as_of: i64,
}

impl Default for State {
    fn default() -> Self {
        Self {
            last: NONE,
            prev: NONE,
            orders: 0,
            in_window: 0,
            as_of: NONE,
        }
    }
}

#[inline]
fn push_top2(last: &mut i64, prev: &mut i64, t: i64) {
    if t >= *last {
        *prev = *last;
        *last = t;
    } else if t > *prev {
        *prev = t;
    }
}

impl State {
    /// One row: an order at `ts` (None for a row without an order, e.g. a LEFT JOIN prospect)
    /// judged against this row's `as_of`.
    #[inline]
    pub fn update(&mut self, ts: Option<i64>, as_of: i64, th: &Thresholds) {
        if as_of > self.as_of {
            self.as_of = as_of;
        }
        if let Some(t) = ts
            && t <= as_of
        {
            self.orders += 1;
            if t > as_of.saturating_sub(th.loyal_window) {
                self.in_window += 1;
            }
            push_top2(&mut self.last, &mut self.prev, t);
        }
    }

    #[inline]
    pub fn merge(&mut self, other: &State) {
        self.orders += other.orders;
        self.in_window += other.in_window;
        self.as_of = self.as_of.max(other.as_of);
        // Top two of the four values; NONE sorts below every real instant.
        for t in [other.last, other.prev] {
            if t != NONE {
                push_top2(&mut self.last, &mut self.prev, t);
            }
        }
    }

    /// The stage; None when the group never had a non-NULL `as_of`.
    pub fn stage(&self, th: &Thresholds) -> Option<Stage> {
        if self.as_of == NONE {
            return None;
        }
        if self.orders == 0 {
            return Some(Stage::Prospect);
        }
        let since = self.as_of.saturating_sub(self.last);
        Some(if since > th.churn {
            Stage::Churned
        } else if since > th.at_risk {
            Stage::AtRisk
        } else if self.orders >= 2 && self.last.saturating_sub(self.prev) > th.churn {
            Stage::Reactivated
        } else if self.orders == 1 {
            Stage::New
        } else if self.in_window >= th.loyal_min_orders {
            Stage::Loyal
        } else {
            Stage::Repeat
        })
    }
}
