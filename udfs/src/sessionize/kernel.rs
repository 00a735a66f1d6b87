/// One partition's running sessionization.
#[derive(Debug, Clone, Copy)]
pub struct Sessions {
    gap: i64,
    last: Option<i64>,
    session: i64,
}

/// A timestamp earlier than the one before it: the rows are not in time order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OutOfOrder {
    pub previous: i64,
    pub ts: i64,
}

impl Sessions {
    /// `gap` in the timestamps' ticks (>= 0): a session ends when the next event is more
    /// than `gap` ticks after the previous one.
    pub fn new(gap: i64) -> Self {
        Self {
            gap,
            last: None,
            session: 0,
        }
    }

    /// The session of the next event, `ts` no earlier than the previous one.
    #[inline]
    pub fn next(&mut self, ts: i64) -> Result<i64, OutOfOrder> {
        match self.last {
            Some(previous) if ts < previous => return Err(OutOfOrder { previous, ts }),
            Some(previous) if (ts as i128 - previous as i128) <= self.gap as i128 => {}
            _ => self.session += 1,
        }
        self.last = Some(ts);
        Ok(self.session)
    }
}

/// Session numbers of timestamps in ascending order (`None`: no timestamp, no session).
pub fn sessions(ts: &[Option<i64>], gap: i64) -> Result<Vec<Option<i64>>, OutOfOrder> {
    let mut s = Sessions::new(gap);
    ts.iter()
        .map(|t| t.map(|t| s.next(t)).transpose())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn by_hand() {
        // gap 30: 0, 10, 40 (30 after 10: same), 71 (31 after: new), 71 (tie: same), 200.
        let ts = [Some(0), Some(10), Some(40), Some(71), Some(71), Some(200)];
        assert_eq!(
            sessions(&ts, 30).unwrap(),
            vec![Some(1), Some(1), Some(1), Some(2), Some(2), Some(3)]
        );
        // Gap 0: only ties share a session.
        let ts = [Some(5), Some(5), Some(6)];
        assert_eq!(sessions(&ts, 0).unwrap(), vec![Some(1), Some(1), Some(2)]);
        // NULLs get no session and do not break one.
        let ts = [Some(1), None, Some(2), None];
        assert_eq!(
            sessions(&ts, 5).unwrap(),
            vec![Some(1), None, Some(1), None]
        );
        assert_eq!(sessions(&[], 5).unwrap(), vec![]);
        // The extremes of i64 do not overflow.
        let ts = [Some(i64::MIN), Some(i64::MAX)];
        assert_eq!(sessions(&ts, i64::MAX).unwrap(), vec![Some(1), Some(2)]);
        // Going back in time is an error.
        assert_eq!(
            sessions(&[Some(9), Some(3)], 5),
            Err(OutOfOrder { previous: 9, ts: 3 })
        );
    }

    proptest::proptest! {
        /// The session number is 1 + the number of gaps larger than `gap` before the event
        /// (the lag-based definition), and feeding the events in two runs (as batches
        /// arrive) changes nothing.
        #[test]
        fn matches_the_lag_definition(
            mut ts in proptest::collection::vec(-50i64..50, 0..40),
            gap in 0i64..20,
            cut in 0usize..40,
        ) {
            ts.sort();
            let got = sessions(&ts.iter().map(|&t| Some(t)).collect::<Vec<_>>(), gap).unwrap();
            for (i, session) in got.iter().enumerate() {
                let breaks = (1..=i).filter(|&j| ts[j] - ts[j - 1] > gap).count() as i64;
                proptest::prop_assert_eq!(*session, Some(1 + breaks));
            }
            let cut = cut.min(ts.len());
            let mut s = Sessions::new(gap);
            let split: Vec<_> = ts[..cut].iter().chain(&ts[cut..]).map(|&t| Some(s.next(t).unwrap())).collect();
            proptest::prop_assert_eq!(split, got);
        }
    }
}
