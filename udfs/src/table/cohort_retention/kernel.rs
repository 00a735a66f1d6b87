//! The one-pass cohort triangle (`cohort_retention`), kernel half: plain state with update /
//! merge / finish, no Arrow types. The adapter is beside it: the table function in
//! `table::cohort_retention`, its two internal aggregates in `aggregates`.
//!
//! - [`KeyedSums`]: per group (customer), the distinct keys (calendar periods) it was active in
//!   and a compensated sum (revenue) per key, in flat vectors: one "current" slot per group (the
//!   key of its latest row, with its running sum) and one shared log of closed (group, key, sum)
//!   entries. Rows that arrive in time order per customer (append-only purchase logs) touch only
//!   the slot, and close one log entry per new period; out-of-order rows may log a key twice, and
//!   the log is compacted (bucketed by group and combined, in linear time) whenever it has
//!   doubled, so memory stays near one entry per distinct (customer, period) whatever the row
//!   order. The log is a list of fixed-size chunks: growing it never copies what it holds.
//! - [`Triangle`]: per cohort (first period), dense per-offset counts of active customers and
//!   revenue sums; the zero-filled rows of the triangle at the end.
//!
//! Revenue is summed with Neumaier's compensation ([`Sum`]) at both levels, so a cell's revenue
//! does not depend on row order or partitioning beyond the last bit or two (and exactly not at
//! all for amounts whose sums are exact, such as cents below 2^53).

use std::collections::HashMap;

/// A compensated (Neumaier) sum: `hi + lo` carries the rounding error `hi` alone would lose.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Sum {
    pub hi: f64,
    pub lo: f64,
}

impl Sum {
    pub fn of(x: f64) -> Self {
        Sum { hi: x, lo: 0.0 }
    }

    #[inline]
    pub fn add(&mut self, x: f64) {
        let t = self.hi + x;
        if self.hi.abs() >= x.abs() {
            self.lo += (self.hi - t) + x;
        } else {
            self.lo += (x - t) + self.hi;
        }
        self.hi = t;
    }

    #[inline]
    pub fn merge(&mut self, other: Sum) {
        self.add(other.hi);
        self.lo += other.lo;
    }

    /// The sum. An infinite or NaN total is returned as is (the compensation would be NaN).
    pub fn value(self) -> f64 {
        if self.hi.is_finite() {
            self.hi + self.lo
        } else {
            self.hi
        }
    }
}

/// A revenue total: the compensated sum of floating amounts ([`Sum`]), or the exact sum of
/// DECIMAL amounts as their unscaled `i128` (all of one scale). Both merge associatively and
/// commutatively (the decimal exactly; it saturates on overflow, which the adapter reports as an
/// error since a saturated total is beyond every DECIMAL(38) value).
pub trait Amount: Copy + Default + PartialEq + std::fmt::Debug + Send + Sync + 'static {
    fn merge(&mut self, other: Self);

    /// The total as a float, for ratios.
    fn to_f64(self) -> f64;
}

impl Amount for Sum {
    #[inline]
    fn merge(&mut self, other: Self) {
        Sum::merge(self, other)
    }

    fn to_f64(self) -> f64 {
        self.value()
    }
}

impl Amount for i128 {
    #[inline]
    fn merge(&mut self, other: Self) {
        *self = self.saturating_add(other);
    }

    fn to_f64(self) -> f64 {
        self as f64
    }
}

/// Marks an empty slot.
const NO_KEY: i64 = i64::MIN;

/// Entries the log may hold before its first compaction.
const MIN_COMPACT: usize = 1 << 20;

#[derive(Debug, Clone, Copy, Default)]
struct Entry<A> {
    group: u32,
    key: i64,
    sum: A,
}

/// Entries per chunk of the log (128 KiB: an allocation the allocator recycles, where 2 MiB
/// chunks went to and from the kernel every time and doubled the system time).
const CHUNK: usize = 1 << 12;

/// An append-only list of entries in fixed-size chunks.
#[derive(Debug)]
struct Log<A> {
    chunks: Vec<Vec<Entry<A>>>,
    len: usize,
}

impl<A> Default for Log<A> {
    fn default() -> Self {
        Self {
            chunks: vec![],
            len: 0,
        }
    }
}

impl<A: Amount> Log<A> {
    #[inline]
    fn push(&mut self, e: Entry<A>) {
        match self.chunks.last_mut() {
            Some(c) if c.len() < CHUNK => c.push(e),
            _ => {
                let mut c = Vec::with_capacity(CHUNK);
                c.push(e);
                self.chunks.push(c);
            }
        }
        self.len += 1;
    }

    fn iter(&self) -> impl Iterator<Item = &Entry<A>> {
        self.chunks.iter().flatten()
    }

    fn bytes(&self) -> usize {
        self.chunks.len() * CHUNK * size_of::<Entry<A>>()
    }
}

/// Per-group distinct keys with a compensated sum each (see the module docs).
#[derive(Debug)]
pub struct KeyedSums<A = Sum> {
    slot_key: Vec<i64>,
    slot_sum: Vec<A>,
    log: Log<A>,
    compact_at: usize,
    /// The smallest log that is compacted ([`MIN_COMPACT`]; small in tests).
    min_compact: usize,
    /// Groups that have gone back to an earlier key. Only their closed entries can repeat a
    /// (group, key) already logged: a group whose keys only grow closes each key once.
    disordered: Vec<bool>,
    /// Entries logged by disordered groups since the last compaction: an upper bound on what a
    /// compaction could remove, so the log is compacted only when that is a real share of it.
    suspect: usize,
}

impl<A> Default for KeyedSums<A> {
    fn default() -> Self {
        Self {
            slot_key: vec![],
            slot_sum: vec![],
            log: Log::default(),
            compact_at: MIN_COMPACT,
            min_compact: MIN_COMPACT,
            disordered: vec![],
            suspect: 0,
        }
    }
}

/// Groups' distinct keys in ascending order with their sums: group g's are
/// `keys[offsets[g]..offsets[g + 1]]`.
#[derive(Debug, PartialEq)]
pub struct Runs<A = Sum> {
    pub offsets: Vec<usize>,
    pub keys: Vec<i64>,
    pub sums: Vec<A>,
}

impl<A> Default for Runs<A> {
    fn default() -> Self {
        Self {
            offsets: vec![],
            keys: vec![],
            sums: vec![],
        }
    }
}

impl<A> Runs<A> {
    pub fn groups(&self) -> usize {
        self.offsets.len().saturating_sub(1)
    }

    pub fn range(&self, g: usize) -> std::ops::Range<usize> {
        self.offsets[g]..self.offsets[g + 1]
    }
}

impl<A: Amount> KeyedSums<A> {
    /// Grows to `n` groups.
    pub fn resize(&mut self, n: usize) {
        if self.slot_key.len() < n {
            self.slot_key.resize(n, NO_KEY);
            self.slot_sum.resize(n, A::default());
            self.disordered.resize(n, false);
        }
    }

    pub fn groups(&self) -> usize {
        self.slot_key.len()
    }

    /// Adds `sum` to group `g`'s `key` (creating the key). `key` must not be `i64::MIN`.
    #[inline]
    pub fn add(&mut self, g: usize, key: i64, sum: A) {
        let slot = self.slot_key[g];
        if slot == key {
            self.slot_sum[g].merge(sum);
            return;
        }
        if slot != NO_KEY {
            if key < slot {
                self.disordered[g] = true;
            }
            self.suspect += self.disordered[g] as usize;
            self.log.push(Entry {
                group: g as u32,
                key: slot,
                sum: self.slot_sum[g],
            });
            if self.log.len >= self.compact_at && self.suspect * 4 >= self.log.len {
                self.compact();
            }
        }
        self.slot_key[g] = key;
        self.slot_sum[g] = sum;
    }

    /// Combines the log's equal (group, key) entries (a linear bucketing by group, see
    /// [`runs_of`]); the next compaction waits until the log has doubled again.
    fn compact(&mut self) {
        let n = self.groups();
        let runs = runs_of(&self.log, n, None);
        self.log = log_of(&runs, 0);
        self.compact_at = (2 * self.log.len).max(self.min_compact);
        self.suspect = 0;
    }

    /// Takes the first `n` groups out (all of them when `n` is the group count), as sorted runs;
    /// the remaining groups are renumbered from 0.
    pub fn take(&mut self, n: usize) -> Runs<A> {
        let n = n.min(self.groups());
        let mine = if n == self.groups() {
            std::mem::take(&mut self.log)
        } else {
            let (mut mine, mut rest) = (Log::default(), Log::default());
            for e in std::mem::take(&mut self.log).iter() {
                if (e.group as usize) < n {
                    mine.push(*e);
                } else {
                    rest.push(Entry {
                        group: e.group - n as u32,
                        ..*e
                    });
                }
            }
            self.log = rest;
            mine
        };
        let runs = runs_of(&mine, n, Some((&self.slot_key[..n], &self.slot_sum[..n])));
        drop(mine);
        self.slot_key.drain(..n);
        self.slot_sum.drain(..n);
        self.disordered.drain(..n);
        self.compact_at = (2 * self.log.len).max(self.min_compact);
        self.suspect = self.log.len;
        runs
    }

    /// Bytes held.
    pub fn size(&self) -> usize {
        self.slot_key.capacity() * size_of::<i64>()
            + self.slot_sum.capacity() * size_of::<A>()
            + self.disordered.capacity()
            + self.log.bytes()
    }
}

/// The log holding `runs` (groups numbered from `first`).
fn log_of<A: Amount>(runs: &Runs<A>, first: u32) -> Log<A> {
    let mut log = Log::default();
    for g in 0..runs.groups() {
        for i in runs.range(g) {
            log.push(Entry {
                group: first + g as u32,
                key: runs.keys[i],
                sum: runs.sums[i],
            });
        }
    }
    log
}

/// The runs of groups `0..n` from their closed entries and (when given) their slots: a stable
/// counting sort by group (O(entries + groups)) straight into the output, each group's slot
/// last (it holds the latest key), then per group a sortedness check (a sort only for rows that
/// arrived out of order) and equal keys combined, in place.
fn runs_of<A: Amount>(log: &Log<A>, n: usize, slots: Option<(&[i64], &[A])>) -> Runs<A> {
    let mut start = vec![0usize; n + 1];
    for e in log.iter() {
        start[e.group as usize + 1] += 1;
    }
    for g in 0..n {
        let slot = slots.is_some_and(|(k, _)| k[g] != NO_KEY);
        start[g + 1] += slot as usize + start[g];
    }
    let total = start[n];
    let mut keys = vec![0i64; total];
    let mut sums = vec![A::default(); total];
    let mut next = start.clone();
    for e in log.iter() {
        let at = &mut next[e.group as usize];
        keys[*at] = e.key;
        sums[*at] = e.sum;
        *at += 1;
    }
    if let Some((slot_key, slot_sum)) = slots {
        for (g, k) in slot_key.iter().enumerate() {
            if *k != NO_KEY {
                keys[next[g]] = *k;
                sums[next[g]] = slot_sum[g];
            }
        }
    }
    // Combine in place: `w` (the write position) never passes the group being read.
    let mut offsets = Vec::with_capacity(n + 1);
    offsets.push(0);
    let mut w = 0;
    let mut pairs = vec![];
    for g in 0..n {
        let (lo, hi) = (start[g], start[g + 1]);
        if !keys[lo..hi].is_sorted() {
            pairs.clear();
            pairs.extend(
                keys[lo..hi]
                    .iter()
                    .copied()
                    .zip(sums[lo..hi].iter().copied()),
            );
            pairs.sort_by_key(|p| p.0);
            for (i, (k, s)) in pairs.iter().enumerate() {
                keys[lo + i] = *k;
                sums[lo + i] = *s;
            }
        }
        let first = w;
        for r in lo..hi {
            if w > first && keys[w - 1] == keys[r] {
                let s = sums[r];
                sums[w - 1].merge(s);
            } else {
                keys[w] = keys[r];
                sums[w] = sums[r];
                w += 1;
            }
        }
        offsets.push(w);
    }
    keys.truncate(w);
    sums.truncate(w);
    Runs {
        offsets,
        keys,
        sums,
    }
}

/// The most periods a triangle may span (its earliest cohort to its end): a triangle of P
/// periods has up to P (P + 1) / 2 rows, so 5,000 periods (13 years of days) is 12.5M rows.
pub const MAX_TRIANGLE_PERIODS: i64 = 5_000;

/// One cohort's cells, dense by offset (period - cohort).
#[derive(Debug, Clone)]
pub struct CohortCells<A = Sum> {
    /// The cohort's period index.
    pub cohort: i64,
    /// The adapter's rendering of the cohort (its start instant), carried along.
    pub label: i64,
    /// Customers active at each offset.
    pub active: Vec<i64>,
    /// Customers whose last active offset is this one ("unbounded" retention counts a customer
    /// at every offset up to its last).
    pub last: Vec<i64>,
    pub revenue: Vec<A>,
}

impl<A> Default for CohortCells<A> {
    fn default() -> Self {
        Self {
            cohort: 0,
            label: 0,
            active: vec![],
            last: vec![],
            revenue: vec![],
        }
    }
}

/// Which customers count as retained in period n.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub enum Mode {
    /// Active in period n itself.
    #[default]
    Bounded,
    /// Active in period n or any later period (PostHog's "on or after").
    Unbounded,
}

impl std::str::FromStr for Mode {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        match s.to_ascii_lowercase().as_str() {
            "bounded" => Ok(Mode::Bounded),
            "unbounded" => Ok(Mode::Unbounded),
            _ => Err(format!("unknown mode '{s}': use 'bounded' or 'unbounded'")),
        }
    }
}

/// The retention triangle being accumulated: cells per cohort.
#[derive(Debug)]
pub struct Triangle<A = Sum> {
    cohorts: Vec<CohortCells<A>>,
    index: HashMap<i64, usize>,
    last: Option<(i64, usize)>,
}

impl<A> Default for Triangle<A> {
    fn default() -> Self {
        Self {
            cohorts: vec![],
            index: HashMap::new(),
            last: None,
        }
    }
}

/// A row of the finished triangle.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct TriangleRow<A = Sum> {
    /// Position of the cohort in [`Triangle::cohorts`].
    pub cohort: usize,
    pub period: i64,
    pub cohort_size: i64,
    pub active: i64,
    pub retention: f64,
    pub revenue: A,
    /// Revenue of periods 0 through this one.
    pub cumulative_revenue: A,
    /// Revenue in this period / revenue in period 0; None when period 0's revenue is 0.
    pub revenue_retention: Option<f64>,
}

/// A triangle longer than [`MAX_TRIANGLE_PERIODS`]: the cohort (its position) and the span.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct TooLong {
    pub cohort: usize,
    pub periods: i64,
}

impl<A: Amount> Triangle<A> {
    fn cohort_pos(&mut self, cohort: i64, label: i64) -> usize {
        match self.last {
            Some((c, pos)) if c == cohort => pos,
            _ => {
                let next = self.cohorts.len();
                let pos = *self.index.entry(cohort).or_insert(next);
                if pos == next {
                    self.cohorts.push(CohortCells {
                        cohort,
                        label,
                        ..Default::default()
                    });
                }
                self.last = Some((cohort, pos));
                pos
            }
        }
    }

    /// Adds `active` customers, `last` customers whose last active offset this is, and
    /// `revenue` to a cell; an offset at or beyond [`MAX_TRIANGLE_PERIODS`] means the triangle is
    /// too long (the offset + 1 is the span).
    #[inline]
    pub fn add_cell(
        &mut self,
        cohort: i64,
        label: i64,
        offset: i64,
        active: i64,
        last: i64,
        revenue: A,
    ) -> Result<(), TooLong> {
        let pos = self.cohort_pos(cohort, label);
        if !(0..MAX_TRIANGLE_PERIODS).contains(&offset) {
            return Err(TooLong {
                cohort: pos,
                periods: offset.saturating_add(1),
            });
        }
        let c = &mut self.cohorts[pos];
        let k = offset as usize;
        if c.active.len() <= k {
            c.active.resize(k + 1, 0);
            c.last.resize(k + 1, 0);
            c.revenue.resize(k + 1, A::default());
        }
        c.active[k] += active;
        c.last[k] += last;
        c.revenue[k].merge(revenue);
        Ok(())
    }

    /// Adds one customer: its cohort and the offsets it was active at (ascending), with its
    /// revenue there.
    pub fn add_customer(
        &mut self,
        cohort: i64,
        label: i64,
        offsets: &[i64],
        revenue: &[A],
    ) -> Result<(), TooLong> {
        let last = offsets.iter().copied().max();
        for (o, r) in offsets.iter().zip(revenue) {
            self.add_cell(cohort, label, *o, 1, i64::from(Some(*o) == last), *r)?;
        }
        Ok(())
    }

    /// Adds every cell of another triangle.
    pub fn merge(&mut self, other: &Triangle<A>) -> Result<(), TooLong> {
        for (c, k, a, l, r) in other.cells() {
            self.add_cell(c.cohort, c.label, k, a, l, r)?;
        }
        Ok(())
    }

    pub fn cohorts(&self) -> &[CohortCells<A>] {
        &self.cohorts
    }

    /// Every (cohort, offset, active, last, revenue) cell held, for a partial state.
    pub fn cells(&self) -> impl Iterator<Item = (&CohortCells<A>, i64, i64, i64, A)> {
        self.cohorts.iter().flat_map(|c| {
            (0..c.active.len()).map(move |k| (c, k as i64, c.active[k], c.last[k], c.revenue[k]))
        })
    }

    /// The triangle's rows, cohorts in ascending order, each zero-filled from period 0 to
    /// `end` (a period index: as_of's, or by default the latest period with any activity).
    /// Cohorts after `end` have no rows.
    pub fn rows(&self, end: Option<i64>, mode: Mode) -> Result<Vec<TriangleRow<A>>, TooLong> {
        let end = end.or_else(|| {
            self.cohorts
                .iter()
                .map(|c| c.cohort + c.active.len() as i64 - 1)
                .max()
        });
        let Some(end) = end else {
            return Ok(vec![]);
        };
        let mut order: Vec<usize> = (0..self.cohorts.len()).collect();
        order.sort_by_key(|&i| self.cohorts[i].cohort);
        let mut rows = vec![];
        for i in order {
            let c = &self.cohorts[i];
            let Some(span) = end.checked_sub(c.cohort).and_then(|s| s.checked_add(1)) else {
                return Err(TooLong {
                    cohort: i,
                    periods: i64::MAX,
                });
            };
            if span <= 0 {
                continue;
            }
            if span > MAX_TRIANGLE_PERIODS {
                return Err(TooLong {
                    cohort: i,
                    periods: span,
                });
            }
            let size = c.active.first().copied().unwrap_or(0);
            // Unbounded: customers whose last offset is at or after k, a suffix sum.
            let mut still: i64 = c.last.iter().sum();
            let first_revenue = c.revenue.first().copied().unwrap_or_default().to_f64();
            let mut cumulative = A::default();
            for k in 0..span as usize {
                let active = match mode {
                    Mode::Bounded => c.active.get(k).copied().unwrap_or(0),
                    Mode::Unbounded => still,
                };
                still -= c.last.get(k).copied().unwrap_or(0);
                let revenue = c.revenue.get(k).copied().unwrap_or_default();
                cumulative.merge(revenue);
                rows.push(TriangleRow {
                    cohort: i,
                    period: k as i64,
                    cohort_size: size,
                    active,
                    retention: if size > 0 {
                        active as f64 / size as f64
                    } else {
                        0.0
                    },
                    revenue,
                    cumulative_revenue: cumulative,
                    revenue_retention: (first_revenue != 0.0)
                        .then(|| revenue.to_f64() / first_revenue),
                });
            }
        }
        Ok(rows)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// (group, key, amount) rows.
    /// Keyed sums that compact from 4 log entries on, so the tests exercise compaction.
    fn small() -> KeyedSums {
        KeyedSums {
            compact_at: 4,
            min_compact: 4,
            ..Default::default()
        }
    }

    fn keyed(rows: &[(usize, i64, f64)], groups: usize) -> Runs {
        let mut k = small();
        k.resize(groups);
        for &(g, key, x) in rows {
            k.add(g, key, Sum::of(x));
        }
        k.take(groups)
    }

    /// The same by brute force: a sorted map per group.
    fn expected(rows: &[(usize, i64, f64)], groups: usize) -> Vec<Vec<(i64, f64)>> {
        let mut m = vec![std::collections::BTreeMap::<i64, f64>::new(); groups];
        for &(g, key, x) in rows {
            *m[g].entry(key).or_default() += x;
        }
        m.into_iter().map(|g| g.into_iter().collect()).collect()
    }

    fn as_vecs(r: &Runs) -> Vec<Vec<(i64, f64)>> {
        (0..r.groups())
            .map(|g| r.range(g).map(|i| (r.keys[i], r.sums[i].value())).collect())
            .collect()
    }

    #[test]
    fn keyed_sums_by_hand() {
        // Group 0: periods 5, 3, 5 (out of order), group 1: nothing, group 2: 7 twice.
        let rows = [
            (0, 5, 1.0),
            (2, 7, 2.0),
            (0, 3, 10.0),
            (2, 7, 3.0),
            (0, 5, 100.0),
        ];
        let r = keyed(&rows, 3);
        assert_eq!(r.offsets, vec![0, 2, 2, 3]);
        assert_eq!(r.keys, vec![3, 5, 7]);
        assert_eq!(
            as_vecs(&r),
            vec![vec![(3, 10.0), (5, 101.0)], vec![], vec![(7, 5.0)]]
        );
    }

    #[test]
    fn take_first_renumbers_the_rest() {
        let mut k = KeyedSums::default();
        k.resize(3);
        for &(g, key) in &[(0usize, 1i64), (1, 2), (2, 3), (0, 4), (2, 5)] {
            k.add(g, key, Sum::of(1.0));
        }
        let first = k.take(1);
        assert_eq!(first.keys, vec![1, 4]);
        assert_eq!(k.groups(), 2);
        let rest = k.take(2);
        assert_eq!(rest.offsets, vec![0, 1, 3]);
        assert_eq!(rest.keys, vec![2, 3, 5]);
    }

    #[test]
    fn compaction_keeps_every_sum() {
        // Alternating keys log an entry per row; compaction must combine them.
        let mut k = KeyedSums::default();
        k.resize(2);
        let n = MIN_COMPACT * 3;
        for i in 0..n {
            k.add(i % 2, (i / 2 % 2) as i64, Sum::of(1.0));
        }
        assert!(k.log.len < MIN_COMPACT, "compacted: {}", k.log.len);
        let r = k.take(2);
        assert_eq!(r.keys, vec![0, 1, 0, 1]);
        let total: f64 = r.sums.iter().map(|s| s.value()).sum();
        assert_eq!(total, n as f64);
    }

    #[test]
    fn compensated_sum_keeps_small_terms() {
        let mut s = Sum::default();
        s.add(1e16);
        for _ in 0..1000 {
            s.add(1.0);
        }
        s.add(-1e16);
        assert_eq!(s.value(), 1000.0);
        let mut inf = Sum::of(f64::INFINITY);
        inf.add(1.0);
        assert_eq!(inf.value(), f64::INFINITY);
    }

    #[test]
    fn triangle_by_hand() {
        // Cohort 10: customers active at offsets {0, 2} and {0}; cohort 11: {0, 1}.
        let mut t = Triangle::default();
        t.add_customer(10, 100, &[0, 2], &[Sum::of(5.0), Sum::of(7.0)])
            .unwrap();
        t.add_customer(11, 110, &[0, 1], &[Sum::of(1.0), Sum::of(2.0)])
            .unwrap();
        t.add_customer(10, 100, &[0], &[Sum::of(3.0)]).unwrap();
        let rows = t.rows(None, Mode::Bounded).unwrap();
        let got: Vec<(i64, i64, i64, i64, f64)> = rows
            .iter()
            .map(|r| {
                (
                    t.cohorts()[r.cohort].cohort,
                    r.period,
                    r.cohort_size,
                    r.active,
                    r.revenue.value(),
                )
            })
            .collect();
        assert_eq!(
            got,
            vec![
                (10, 0, 2, 2, 8.0),
                (10, 1, 2, 0, 0.0),
                (10, 2, 2, 1, 7.0),
                (11, 0, 1, 1, 1.0),
                (11, 1, 1, 1, 2.0),
            ]
        );
        assert_eq!(rows[2].retention, 0.5);
        // An explicit end extends every cohort; one before a cohort drops it.
        assert_eq!(t.rows(Some(13), Mode::Bounded).unwrap().len(), 4 + 3);
        assert_eq!(t.rows(Some(10), Mode::Bounded).unwrap().len(), 1);
        assert!(t.rows(Some(9), Mode::Bounded).unwrap().is_empty());
        assert_eq!(
            t.rows(Some(10 + MAX_TRIANGLE_PERIODS), Mode::Bounded),
            Err(TooLong {
                cohort: 0,
                periods: MAX_TRIANGLE_PERIODS + 1
            })
        );
        let empty = Triangle::<Sum>::default();
        assert!(empty.rows(None, Mode::Bounded).unwrap().is_empty());
    }

    fn triangle_of(runs: &[(i64, Vec<(i64, f64)>)]) -> Vec<TriangleRow> {
        let mut t = Triangle::default();
        for (cohort, cells) in runs {
            let offsets: Vec<i64> = cells.iter().map(|c| c.0).collect();
            let sums: Vec<Sum> = cells.iter().map(|c| Sum::of(c.1)).collect();
            t.add_customer(*cohort, 0, &offsets, &sums).unwrap();
        }
        t.rows(None, Mode::Bounded).unwrap()
    }

    proptest! {
        // Keyed sums: any row order, any split into two states merged either way, equal the
        // brute-force answer (amounts are quarters, so every sum is exact).
        #[test]
        fn keyed_sums_independent_of_order_and_split(
            rows in proptest::collection::vec((0usize..6, 0i64..8, -40i32..40), 0..200),
            split in 0usize..200,
            seed in any::<u64>(),
        ) {
            let rows: Vec<(usize, i64, f64)> =
                rows.into_iter().map(|(g, k, x)| (g, k, x as f64 / 4.0)).collect();
            let want = expected(&rows, 6);
            prop_assert_eq!(as_vecs(&keyed(&rows, 6)), want.clone());
            let mut shuffled = rows.clone();
            let mut s = seed;
            for i in (1..shuffled.len()).rev() {
                s = s.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
                shuffled.swap(i, (s >> 33) as usize % (i + 1));
            }
            prop_assert_eq!(as_vecs(&keyed(&shuffled, 6)), want.clone());
            // Split: two partial states, merged into a third in either order.
            let cut = split.min(rows.len());
            let parts = [keyed(&rows[..cut], 6), keyed(&rows[cut..], 6)];
            for order in [[0, 1], [1, 0]] {
                let mut m = small();
                m.resize(6);
                for p in order {
                    let r = &parts[p];
                    for g in 0..6 {
                        for i in r.range(g) {
                            m.add(g, r.keys[i], r.sums[i]);
                        }
                    }
                }
                prop_assert_eq!(as_vecs(&m.take(6)), want.clone());
            }
        }

        // Triangle: merging partial triangles in any grouping equals one triangle of all.
        #[test]
        fn triangle_merge_laws(
            customers in proptest::collection::vec(
                (0i64..5, proptest::collection::btree_map(0i64..6, -20i32..20, 1..4)), 0..40),
            a in 0usize..40, b in 0usize..40,
        ) {
            let customers: Vec<(i64, Vec<(i64, f64)>)> = customers
                .into_iter()
                .map(|(c, m)| (c, m.into_iter().map(|(k, x)| (k, x as f64 / 4.0)).collect()))
                .collect();
            let want = triangle_of(&customers);
            let (a, b) = (a.min(customers.len()), b.min(customers.len()));
            let (a, b) = (a.min(b), a.max(b));
            let part = |r: &[(i64, Vec<(i64, f64)>)]| {
                let mut t = Triangle::default();
                for (cohort, cells) in r {
                    let o: Vec<i64> = cells.iter().map(|c| c.0).collect();
                    let s: Vec<Sum> = cells.iter().map(|c| Sum::of(c.1)).collect();
                    t.add_customer(*cohort, 0, &o, &s).unwrap();
                }
                t
            };
            let (x, y, z) = (part(&customers[..a]), part(&customers[a..b]), part(&customers[b..]));
            // (x + y) + z and z + (y + x)
            let mut left = Triangle::default();
            for t in [&x, &y, &z] { left.merge(t).unwrap(); }
            let mut right = Triangle::default();
            for t in [&z, &y, &x] { right.merge(t).unwrap(); }
            let key = |t: &mut Triangle| {
                let rows = t.rows(None, Mode::Unbounded).unwrap();
                rows.iter().map(|r| (t.cohorts()[r.cohort].cohort, r.period, r.active, r.revenue, r.cumulative_revenue)).collect::<Vec<_>>()
            };
            let mut whole = part(&customers);
            let w = key(&mut whole);
            prop_assert_eq!(key(&mut left), w.clone());
            prop_assert_eq!(key(&mut right), w);
            prop_assert_eq!(whole.rows(None, Mode::Bounded).unwrap(), want);
        }
    }
}
