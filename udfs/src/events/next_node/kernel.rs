#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Direction {
    Forward,
    Backward,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Base {
    Head,
    Tail,
    FirstMatch,
    LastMatch,
}

impl Direction {
    pub fn parse(s: &str) -> Result<Self, String> {
        match s {
            "forward" => Ok(Self::Forward),
            "backward" => Ok(Self::Backward),
            _ => Err(format!(
                "unknown direction '{s}': use 'forward' or 'backward'"
            )),
        }
    }
}

impl Base {
    pub fn parse(s: &str) -> Result<Self, String> {
        match s {
            "head" => Ok(Self::Head),
            "tail" => Ok(Self::Tail),
            "first_match" => Ok(Self::FirstMatch),
            "last_match" => Ok(Self::LastMatch),
            _ => Err(format!(
                "unknown base '{s}': use 'head', 'tail', 'first_match' or 'last_match'"
            )),
        }
    }
}

/// One event: the chain's conditions it matches (bit k: event k + 1) and whether it
/// satisfies `base_condition`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Node {
    pub mask: u32,
    pub can_be_base: bool,
}

/// The position of the answer among a group's events in time order, as ClickHouse: the base
/// is the first event (`head`), the last (`tail`), or the first / last event matching
/// event1 that satisfies `base_condition` (`first_match`, `last_match`; `head` and `tail`
/// need it too). From the base, the k-th event forward (backward) must match event k + 1 for
/// every event of the chain; the answer is the event after (before) them. None when there is
/// no base, the chain breaks, or no event is left.
pub fn next_node(nodes: &[Node], events: usize, direction: Direction, base: Base) -> Option<usize> {
    let n = nodes.len();
    if n <= events {
        return None;
    }
    let is_base = |x: &Node| x.can_be_base && x.mask & 1 != 0;
    let b = match base {
        Base::Head => nodes[0].can_be_base.then_some(0),
        Base::Tail => nodes[n - 1].can_be_base.then_some(n - 1),
        Base::FirstMatch => nodes.iter().position(is_base),
        Base::LastMatch => nodes.iter().rposition(is_base),
    }?;
    let matches = |i: usize, k: usize| nodes[i].mask & (1 << k) != 0;
    match direction {
        Direction::Forward => {
            let chain = (0..events).all(|k| b + k < n && matches(b + k, k));
            (chain && b + events < n).then_some(b + events)
        }
        Direction::Backward => {
            let chain = (0..events).all(|k| k < b && matches(b - k, k));
            chain.then(|| b - events)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// ClickHouse's documented flows: pages as strings, conditions by page name.
    fn flow(pages: &[&str], base: &str, events: &[&str]) -> Vec<Node> {
        pages
            .iter()
            .map(|p| Node {
                mask: events
                    .iter()
                    .enumerate()
                    .filter(|(_, e)| *e == p)
                    .fold(0, |m, (k, _)| m | 1 << k),
                can_be_base: *p == base,
            })
            .collect()
    }

    fn answer<'a>(
        pages: &[&'a str],
        d: &str,
        b: &str,
        base: &str,
        events: &[&str],
    ) -> Option<&'a str> {
        let nodes = flow(pages, base, events);
        next_node(
            &nodes,
            events.len(),
            Direction::parse(d).unwrap(),
            Base::parse(b).unwrap(),
        )
        .map(|i| pages[i])
    }

    #[test]
    fn clickhouse_documented_flows() {
        let u1 = ["Home", "Gift", "Exit"];
        let u2 = ["Home", "Home", "Gift", "Basket"];
        let u3 = ["Gift", "Home", "Gift", "Basket"];
        let abcde = ["A", "B", "C", "D", "E"];
        assert_eq!(
            answer(&abcde, "forward", "head", "A", &["A", "B"]),
            Some("C")
        );
        // forward, head, base Home, chain Home Gift.
        let f = |u: &[&'static str]| answer(u, "forward", "head", "Home", &["Home", "Gift"]);
        assert_eq!((f(&u1), f(&u2), f(&u3)), (Some("Exit"), None, None));
        // backward, tail, base Basket, chain Basket Gift.
        let f = |u: &[&'static str]| answer(u, "backward", "tail", "Basket", &["Basket", "Gift"]);
        assert_eq!((f(&u1), f(&u2), f(&u3)), (None, Some("Home"), Some("Home")));
        // forward, first_match, base Gift, chain Gift.
        let f = |u: &[&'static str]| answer(u, "forward", "first_match", "Gift", &["Gift"]);
        assert_eq!(
            (f(&u1), f(&u2), f(&u3)),
            (Some("Exit"), Some("Basket"), Some("Home"))
        );
        // forward, first_match, chain Gift Home.
        let f = |u: &[&'static str]| answer(u, "forward", "first_match", "Gift", &["Gift", "Home"]);
        assert_eq!((f(&u1), f(&u2), f(&u3)), (None, None, Some("Gift")));
        // backward, last_match, chain Gift.
        let f = |u: &[&'static str]| answer(u, "backward", "last_match", "Gift", &["Gift"]);
        assert_eq!(
            (f(&u1), f(&u2), f(&u3)),
            (Some("Home"), Some("Home"), Some("Home"))
        );
        // backward, last_match, chain Gift Home.
        let f = |u: &[&'static str]| answer(u, "backward", "last_match", "Gift", &["Gift", "Home"]);
        assert_eq!((f(&u1), f(&u2), f(&u3)), (None, Some("Home"), Some("Gift")));
    }

    #[test]
    fn edges() {
        // As many events as the chain: nothing can follow.
        assert_eq!(
            answer(&["A", "B"], "forward", "head", "A", &["A", "B"]),
            None
        );
        assert_eq!(answer(&[], "forward", "head", "A", &["A"]), None);
        // The base must satisfy base_condition.
        assert_eq!(answer(&["A", "B"], "forward", "head", "X", &["A"]), None);
        assert!(Direction::parse("up").is_err());
        assert!(Base::parse("middle").is_err());
    }
}
