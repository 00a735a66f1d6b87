/// Steps a backtracking match may take (ClickHouse's `sequence_match_max_iterations`).
pub const MAX_ITERATIONS: usize = 1_000_000;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// Condition index (0-based).
    Event(u32),
    Any,
    Star,
    TimeLe(i64),
    TimeLt(i64),
    TimeGe(i64),
    TimeGt(i64),
    TimeEq(i64),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pattern {
    /// Actions, starting with the implicit leading `.*`.
    pub actions: Vec<Action>,
    pub has_time: bool,
    /// Conditions the pattern names (bitmask).
    pub conditions: u32,
    /// DFA states: (has_star, transition), transition None / Some(None) any / Some(Some(k)).
    dfa: Vec<(bool, Option<Option<u32>>)>,
}

impl Pattern {
    /// Parses ClickHouse's pattern syntax for `conditions` conditions; time values are in
    /// seconds and are multiplied by `ticks_per_second`.
    pub fn parse(p: &str, conditions: usize, ticks_per_second: i64) -> Result<Pattern, String> {
        let mut actions = vec![Action::Star];
        let mut dfa: Vec<(bool, Option<Option<u32>>)> = vec![(true, None)];
        let (mut has_time, mut mask) = (false, 0u32);
        let b = p.as_bytes();
        let mut i = 0;
        let number = |i: &mut usize| -> Option<u64> {
            let start = *i;
            while *i < b.len() && b[*i].is_ascii_digit() {
                *i += 1;
            }
            p[start..*i].parse().ok()
        };
        while i < b.len() {
            let at = i;
            let err = |m: &str| format!("{m} at position {at} of pattern '{p}'");
            if p[i..].starts_with("(?") {
                i += 2;
                if p[i..].starts_with('t') {
                    i += 1;
                    type TimeOp = (&'static str, fn(i64) -> Action);
                    let ops: [TimeOp; 5] = [
                        ("<=", Action::TimeLe),
                        ("<", Action::TimeLt),
                        (">=", Action::TimeGe),
                        (">", Action::TimeGt),
                        ("==", Action::TimeEq),
                    ];
                    let Some((op, make)) = ops.iter().find(|(op, _)| p[i..].starts_with(op)) else {
                        return Err(err("unknown time condition (use <, <=, >, >= or ==)"));
                    };
                    i += op.len();
                    let secs = number(&mut i).ok_or_else(|| err("expected a number of seconds"))?;
                    if !matches!(
                        actions.last(),
                        Some(Action::Event(_) | Action::Any | Action::Star)
                    ) {
                        return Err(err("a time condition must follow an event condition"));
                    }
                    has_time = true;
                    let ticks = i64::try_from(secs)
                        .unwrap_or(i64::MAX)
                        .saturating_mul(ticks_per_second);
                    actions.push(make(ticks));
                } else {
                    let n = number(&mut i).ok_or_else(|| err("expected a condition number"))?;
                    if n == 0 || n as usize > conditions {
                        return Err(err(&format!(
                            "condition number {n} is out of range 1..{conditions}"
                        )));
                    }
                    let k = (n - 1) as u32;
                    actions.push(Action::Event(k));
                    dfa.last_mut().expect("a state").1 = Some(Some(k));
                    dfa.push((false, None));
                    mask |= 1 << k;
                }
                if !p[i..].starts_with(')') {
                    return Err(format!("expected ')' at position {i} of pattern '{p}'"));
                }
                i += 1;
            } else if p[i..].starts_with(".*") {
                i += 2;
                actions.push(Action::Star);
                dfa.last_mut().expect("a state").0 = true;
            } else if p[i..].starts_with('.') {
                i += 1;
                actions.push(Action::Any);
                dfa.last_mut().expect("a state").1 = Some(None);
                dfa.push((false, None));
            } else {
                return Err(err("unexpected character"));
            }
        }
        Ok(Pattern {
            actions,
            has_time,
            conditions: mask,
            dfa,
        })
    }

    /// DFA match over `events[start..]` (patterns without time conditions).
    fn dfa_match(&self, events: &[(i64, u32)]) -> bool {
        let n = self.dfa.len();
        let mut active = vec![false; n];
        let mut next = vec![false; n];
        active[0] = true;
        let mut n_active = 1;
        for &(_, bits) in events {
            if n_active == 0 || active[n - 1] {
                break;
            }
            n_active = 0;
            next.iter_mut().for_each(|v| *v = false);
            for s in 0..n {
                if !active[s] {
                    continue;
                }
                match self.dfa[s].1 {
                    None => {}
                    Some(None) => {
                        next[s + 1] = true;
                        n_active += 1;
                    }
                    Some(Some(k)) if bits & (1 << k) != 0 => {
                        next[s + 1] = true;
                        n_active += 1;
                    }
                    Some(Some(_)) => {}
                }
                if self.dfa[s].0 {
                    next[s] = true;
                    n_active += 1;
                }
            }
            std::mem::swap(&mut active, &mut next);
        }
        active[n - 1]
    }

    /// Backtracking match from `*pos`; leaves `*pos` after the match (or one past where it
    /// started), as ClickHouse's `backtrackingMatch`.
    /// `used`, when given, receives the positions of the events the match's `(?N)` steps
    /// used, in pattern order.
    fn backtrack_match(
        &self,
        events: &[(i64, u32)],
        pos: &mut usize,
        mut used: Option<&mut Vec<usize>>,
    ) -> Result<bool, String> {
        let acts = &self.actions;
        let end = events.len();
        let begin = *pos;
        let (mut a, mut e, mut base) = (0usize, *pos, *pos);
        // (action, event, base, events used so far)
        let mut stack: Vec<(usize, usize, usize, usize)> = vec![];
        let backtrack = |stack: &mut Vec<(usize, usize, usize, usize)>,
                         a: &mut usize,
                         e: &mut usize,
                         base: &mut usize,
                         used: &mut Option<&mut Vec<usize>>| {
            while let Some((a0, e0, b0, n0)) = stack.pop() {
                *a = a0;
                *e = e0 + 1;
                *base = b0;
                if let Some(u) = used.as_deref_mut() {
                    u.truncate(n0);
                }
                if *e != end {
                    return true;
                }
            }
            false
        };
        let depth = |used: &Option<&mut Vec<usize>>| used.as_deref().map_or(0, Vec::len);
        let mut steps = 0usize;
        while a < acts.len() && e < end {
            let (ts, bits) = events[e];
            let base_ts = events[base].0;
            match acts[a] {
                Action::Event(k) => {
                    if bits & (1 << k) != 0 {
                        if let Some(u) = used.as_deref_mut() {
                            u.push(e);
                        }
                        base = e;
                        a += 1;
                        e += 1;
                    } else if !backtrack(&mut stack, &mut a, &mut e, &mut base, &mut used) {
                        break;
                    }
                }
                Action::Any => {
                    base = e;
                    a += 1;
                    e += 1;
                }
                Action::Star => {
                    stack.push((a, e, base, depth(&used)));
                    base = e;
                    a += 1;
                }
                Action::TimeLe(d) | Action::TimeLt(d) => {
                    let ok = match acts[a] {
                        Action::TimeLe(_) => ts <= base_ts.saturating_add(d),
                        _ => ts < base_ts.saturating_add(d),
                    };
                    if ok {
                        stack.push((a, e, base, depth(&used)));
                        base = e;
                        a += 1;
                    } else if !backtrack(&mut stack, &mut a, &mut e, &mut base, &mut used) {
                        break;
                    }
                }
                Action::TimeGe(d) | Action::TimeGt(d) | Action::TimeEq(d) => {
                    let limit = base_ts.saturating_add(d);
                    let ok = match acts[a] {
                        Action::TimeGe(_) => ts >= limit,
                        Action::TimeGt(_) => ts > limit,
                        _ => ts == limit,
                    };
                    if ok {
                        stack.push((a, e, base, depth(&used)));
                        base = e;
                        a += 1;
                    } else {
                        e += 1;
                        if e == end && !backtrack(&mut stack, &mut a, &mut e, &mut base, &mut used)
                        {
                            break;
                        }
                    }
                }
            }
            steps += 1;
            if steps > MAX_ITERATIONS {
                return Err(format!(
                    "pattern application proves too difficult, exceeding {MAX_ITERATIONS} steps"
                ));
            }
        }
        // Trailing actions that match the empty sequence.
        while a < acts.len()
            && matches!(
                acts[a],
                Action::Star | Action::TimeLe(_) | Action::TimeLt(_) | Action::TimeGe(0)
            )
        {
            a += 1;
        }
        if e == begin {
            e += 1;
        }
        *pos = e;
        Ok(a == acts.len())
    }

    /// Whether the deterministic parts (runs of `(?N)` and `.`) occur in order: a quick
    /// necessary condition before backtracking.
    fn could_match(&self, events: &[(i64, u32)]) -> bool {
        let mut e = 0usize;
        let mut part: Vec<Action> = vec![];
        let check = |part: &[Action], e: &mut usize| -> bool {
            if part.is_empty() {
                return true;
            }
            let mut init = *e;
            let mut k = 0;
            while k < part.len() && *e < events.len() {
                let ok = match part[k] {
                    Action::Event(c) => events[*e].1 & (1 << c) != 0,
                    _ => true,
                };
                if ok {
                    *e += 1;
                    k += 1;
                } else {
                    init += 1;
                    *e = init;
                    k = 0;
                }
            }
            k == part.len()
        };
        for act in &self.actions {
            match act {
                Action::Event(_) | Action::Any => part.push(*act),
                _ => {
                    if !check(&part, &mut e) {
                        return false;
                    }
                    part.clear();
                }
            }
        }
        check(&part, &mut e)
    }

    /// `sequence_match` of sorted events; `seen` is the bitmask of conditions that held.
    pub fn matches(&self, events: &[(i64, u32)], seen: u32) -> Result<bool, String> {
        if self.conditions & seen != self.conditions {
            return Ok(false);
        }
        if self.has_time {
            Ok(self.could_match(events) && self.backtrack_match(events, &mut 0, None)?)
        } else {
            Ok(self.dfa_match(events))
        }
    }

    /// `sequence_count` of sorted events.
    pub fn count(&self, events: &[(i64, u32)], seen: u32) -> Result<u64, String> {
        if self.conditions & seen != self.conditions || !self.could_match(events) {
            return Ok(0);
        }
        let (mut pos, mut n) = (0usize, 0u64);
        while pos < events.len() && self.backtrack_match(events, &mut pos, None)? {
            n += 1;
        }
        Ok(n)
    }
}

impl Pattern {
    /// `sequence_match_events` of sorted events: the positions of the events the first
    /// match's `(?N)` steps used, in pattern order (empty when nothing matches). The first
    /// match is the backtracking matcher's (ClickHouse's): each `.*` takes as few events as
    /// it can, so it is the match whose steps come earliest, the first step first. Patterns
    /// without time conditions find it without backtracking: a table of which pattern
    /// suffixes can match from which event, then one forward walk.
    pub fn match_events(&self, events: &[(i64, u32)], seen: u32) -> Result<Vec<usize>, String> {
        if self.conditions & seen != self.conditions || !self.could_match(events) {
            return Ok(vec![]);
        }
        if self.has_time {
            let mut used = vec![];
            return Ok(if self.backtrack_match(events, &mut 0, Some(&mut used))? {
                used
            } else {
                vec![]
            });
        }
        let (acts, n) = (&self.actions, events.len());
        let width = n + 1;
        // can[a * width + e]: actions a.. match starting at event e.
        let mut can = vec![false; (acts.len() + 1) * width];
        can[acts.len() * width..].iter_mut().for_each(|c| *c = true);
        for a in (0..acts.len()).rev() {
            for e in (0..=n).rev() {
                let next = |e: usize| can[(a + 1) * width + e];
                can[a * width + e] = match acts[a] {
                    Action::Event(k) => e < n && events[e].1 & (1 << k) != 0 && next(e + 1),
                    Action::Any => e < n && next(e + 1),
                    Action::Star => next(e) || (e < n && can[a * width + e + 1]),
                    _ => unreachable!("no time conditions"),
                };
            }
        }
        let mut used = vec![];
        if !can[0] {
            return Ok(used);
        }
        let (mut a, mut e) = (0usize, 0usize);
        while a < acts.len() {
            match acts[a] {
                Action::Star if can[(a + 1) * width + e] => a += 1,
                Action::Star => e += 1,
                Action::Event(_) => {
                    used.push(e);
                    (a, e) = (a + 1, e + 1);
                }
                _ => (a, e) = (a + 1, e + 1),
            }
        }
        Ok(used)
    }
}

#[cfg(test)]
impl Pattern {
    /// The backtracking matcher's first match from the start, for tests.
    pub fn backtrack_first(&self, events: &[(i64, u32)], used: &mut Vec<usize>) -> bool {
        self.backtrack_match(events, &mut 0, Some(used)).unwrap()
    }
}

/// Sorts a group's events by timestamp, ties by bitmask, and returns the conditions seen.
pub fn prepare(events: &mut [(i64, u32)]) -> u32 {
    events.sort_unstable();
    events.iter().fold(0, |m, e| m | e.1)
}
