use super::MAX_STEPS;

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub struct Modes {
    pub strict_order: bool,
    pub strict_deduplication: bool,
    pub strict_increase: bool,
    pub allow_reentry: bool,
    pub strict_once: bool,
}

impl Modes {
    /// Parses ClickHouse's mode names, comma-separated.
    pub fn parse(s: &str) -> Result<Modes, String> {
        let mut m = Modes::default();
        for part in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            match part {
                "strict_order" => m.strict_order = true,
                "strict_deduplication" => m.strict_deduplication = true,
                "strict_increase" => m.strict_increase = true,
                "allow_reentry" => m.allow_reentry = true,
                "strict_once" => m.strict_once = true,
                "strict" => {
                    return Err(
                        "mode 'strict' is replaced by 'strict_deduplication' (as in ClickHouse)"
                            .into(),
                    );
                }
                other => {
                    return Err(format!(
                        "unknown mode '{other}': use strict_order, strict_deduplication, strict_increase, strict_once or allow_reentry"
                    ));
                }
            }
        }
        if m.allow_reentry && !m.strict_order {
            return Err("mode allow_reentry requires strict_order".into());
        }
        Ok(m)
    }
}

/// The funnel level reached by one group's events (`(ts, index)`, index 1..=steps, 0 for a
/// row matching nothing) and the timestamps of the chain's steps. Sorts `events`.
pub fn funnel(events: &mut [(i64, u32)], steps: usize, window: i64, m: Modes) -> (usize, Vec<i64>) {
    if events.is_empty() {
        return (0, vec![]);
    }
    events.sort_unstable();
    if !m.strict_order && steps == 1 {
        return (1, vec![events[0].0]);
    }
    // Per level: (first timestamp of the chain, timestamp of this step), and the chain's steps.
    let mut level: [Option<(i64, i64)>; MAX_STEPS] = [None; MAX_STEPS];
    let mut paths = vec![[0i64; MAX_STEPS]; steps];
    let reached = |level: &[Option<(i64, i64)>; MAX_STEPS]| {
        level[..steps].iter().take_while(|l| l.is_some()).count()
    };
    let answer = |k: usize, paths: &[[i64; MAX_STEPS]]| -> (usize, Vec<i64>) {
        if k == 0 {
            (0, vec![])
        } else {
            (k, paths[k - 1][..k].to_vec())
        }
    };
    let mut first_event = false;
    for &(ts, idx) in events.iter() {
        if m.strict_order && idx == 0 {
            if first_event {
                break;
            }
            continue;
        }
        if idx == 0 {
            continue;
        }
        let e = idx as usize - 1;
        if e == 0 {
            level[0] = Some((ts, ts));
            paths[0][0] = ts;
            first_event = true;
        } else if m.strict_deduplication && level[e].is_some() {
            return answer(reached(&level), &paths);
        } else if m.strict_order && first_event && level[e - 1].is_none() {
            if m.allow_reentry {
                continue;
            }
            return answer(reached(&level), &paths);
        } else if let Some((first, last)) = level[e - 1] {
            let mut matched = ts <= first.saturating_add(window);
            if m.strict_increase {
                matched = matched && last < ts;
            }
            if matched {
                level[e] = Some((first, ts));
                let mut p = paths[e - 1];
                p[e] = ts;
                paths[e] = p;
                if e + 1 == steps {
                    return answer(steps, &paths);
                }
            }
        }
    }
    answer(reached(&level), &paths)
}

/// One chain of `strict_once`: its first and last step's timestamps and, per step, the
/// position of the step's entry in the sorted entries.
#[derive(Clone, Copy)]
struct Chain {
    first: i64,
    last: i64,
    path: [u32; MAX_STEPS],
}

/// The funnel in `strict_once` mode over one group's rows, `(ts, mask)` with `mask` the
/// conditions the row matches (0: none, kept only in strict_order mode), as ClickHouse 26
/// evaluates it: each row expands to one entry per condition it matches, entries are sorted
/// by (timestamp, condition, row) — rows at one instant in order of their bitmask (the one
/// tie rule ClickHouse leaves to arrival order) — and a chain may use each row at most once (a row matching
/// steps 1 and 2 is not a two-step chain by itself). The other modes apply as in [`funnel`].
///
/// ClickHouse keeps every partial chain, because which of them will extend depends on which
/// rows they used. Here a row's identity only matters at its own timestamp: once time moves
/// on, a chain's future depends only on its first timestamp (the window) — its last step is
/// earlier than anything to come (so `strict_increase` holds) and its rows cannot recur. So
/// at each new timestamp every level keeps one chain, the one with the latest start (of equal
/// starts, the newest), which is the same answer in memory bounded by the entries at one
/// instant. The step times are those of the chain that completed the funnel, or else of the
/// kept chain of the level reached.
pub fn funnel_once(
    rows: &mut [(i64, u32)],
    steps: usize,
    window: i64,
    m: Modes,
) -> (usize, Vec<i64>) {
    // ClickHouse takes rows at one instant in arrival order (which decides, for example,
    // which of two rows matching step 2 strict_deduplication stops at); here in order of
    // their conditions' bitmask, so the answer does not depend on row order.
    rows.sort_unstable();
    // (ts, step 1..=steps or 0 for a row matching nothing, row)
    let mut entries: Vec<(i64, u32, u32)> = Vec::with_capacity(rows.len());
    for (row, &(ts, mask)) in rows.iter().enumerate() {
        if mask == 0 {
            entries.push((ts, 0, row as u32));
        }
        let mut bits = mask;
        while bits != 0 {
            let k = bits.trailing_zeros();
            entries.push((ts, k + 1, row as u32));
            bits &= bits - 1;
        }
    }
    if entries.is_empty() {
        return (0, vec![]);
    }
    entries.sort_unstable();
    if !m.strict_order && steps == 1 {
        return (1, vec![entries[0].0]);
    }
    let times = |c: &Chain, k: usize| -> Vec<i64> {
        c.path[..k].iter().map(|&p| entries[p as usize].0).collect()
    };
    let mut levels: Vec<Vec<Chain>> = vec![vec![]; steps];
    // The chain a level keeps: the latest start, of equal starts the newest.
    let kept = |level: &[Chain]| -> Option<Chain> {
        level
            .iter()
            .enumerate()
            .max_by_key(|(i, c)| (c.first, *i))
            .map(|(_, c)| *c)
    };
    let answer = |levels: &[Vec<Chain>]| -> (usize, Vec<i64>) {
        let k = levels.iter().take_while(|l| !l.is_empty()).count();
        match kept(&levels[k.max(1) - 1]) {
            Some(c) if k > 0 => (k, times(&c, k)),
            _ => (0, vec![]),
        }
    };
    let mut now = None;
    let mut first_event = false;
    for (pos, &(ts, idx, row)) in entries.iter().enumerate() {
        if now != Some(ts) {
            now = Some(ts);
            for level in levels.iter_mut().filter(|l| l.len() > 1) {
                let best = kept(level).expect("non-empty");
                level.clear();
                level.push(best);
            }
        }
        if idx == 0 {
            if m.strict_order && first_event {
                break;
            }
            continue;
        }
        let e = idx as usize - 1;
        if e == 0 {
            let mut path = [0u32; MAX_STEPS];
            path[0] = pos as u32;
            levels[0].push(Chain {
                first: ts,
                last: ts,
                path,
            });
            first_event = true;
        } else if m.strict_deduplication && !levels[e].is_empty() {
            return answer(&levels);
        } else if m.strict_order && first_event && levels[e - 1].is_empty() {
            if m.allow_reentry {
                continue;
            }
            return answer(&levels);
        } else {
            let (before, after) = levels.split_at_mut(e);
            for c in before[e - 1].iter() {
                let fits = ts <= c.first.saturating_add(window)
                    && (!m.strict_increase || c.last < ts)
                    && c.path[..e].iter().all(|&p| entries[p as usize].2 != row);
                if fits {
                    let mut next = *c;
                    next.last = ts;
                    next.path[e] = pos as u32;
                    if e + 1 == steps {
                        return (steps, times(&next, steps));
                    }
                    after[0].push(next);
                }
            }
        }
    }
    answer(&levels)
}

/// The default mode's walk fed one event at a time: `starts[e]` is the first timestamp of
/// the latest chain that reached level `e + 1` (valid for `e < *reached`). Fed a group's
/// events in (timestamp, index) order it is [`funnel`]'s walk, so it reaches the level
/// [`funnel`] returns. Fed any sorted subsequence of them it finds only real chains, and in
/// the default mode more events never lower the level, so once `*reached == steps` the
/// group's answer is settled whatever else arrives: the caller skips events older than the
/// last one it fed (see [`Progress`]) and forgets a settled group's events. Returns whether
/// the level is settled.
pub fn advance(starts: &mut [i64], reached: &mut usize, window: i64, ts: i64, index: u32) -> bool {
    let steps = starts.len();
    let e = index as usize;
    if e == 0 || e > steps {
        return *reached == steps;
    }
    let e = e - 1;
    if e == 0 {
        starts[0] = ts;
        *reached = (*reached).max(1);
    } else if e <= *reached && ts <= starts[e - 1].saturating_add(window) {
        starts[e] = starts[e - 1];
        *reached = (*reached).max(e + 1);
    }
    *reached == steps
}

/// One group's streaming state for [`advance`]: the last event fed (events older than it
/// are left to the sorted evaluation) and the level reached; `starts` live beside it in a
/// flat vector of `steps` per group.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Progress {
    pub last: (i64, u32),
    pub reached: u8,
    pub settled: bool,
}

impl Default for Progress {
    fn default() -> Self {
        Self {
            last: (i64::MIN, 0),
            reached: 0,
            settled: false,
        }
    }
}

impl super::super::Streaming for Progress {
    fn settled(&self) -> bool {
        self.settled
    }

    fn settle(&mut self) {
        self.settled = true;
    }
}

impl Progress {
    /// Feeds one event (skipped when older than the last one fed); true once settled.
    #[inline]
    pub fn feed(&mut self, starts: &mut [i64], window: i64, ts: i64, index: u32) -> bool {
        if (ts, index) >= self.last {
            self.last = (ts, index);
            let mut reached = self.reached as usize;
            self.settled = advance(starts, &mut reached, window, ts, index);
            self.reached = reached as u8;
        }
        self.settled
    }
}
