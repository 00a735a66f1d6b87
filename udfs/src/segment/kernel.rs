/// The segment of quintile scores `r` and `f` (1-5 each); None out of range.
pub fn segment(r: i64, f: i64) -> Option<&'static str> {
    if !(1..=5).contains(&r) || !(1..=5).contains(&f) {
        return None;
    }
    Some(match (r, f) {
        (1..=2, 1..=2) => "hibernating",
        (1..=2, 3..=4) => "at_risk",
        (1..=2, 5) => "cant_lose",
        (3, 1..=2) => "about_to_sleep",
        (3, 3) => "need_attention",
        (3..=4, 4..=5) => "loyal",
        (4, 1) => "promising",
        (5, 1) => "new",
        (4..=5, 2..=3) => "potential_loyalist",
        (5, 4..=5) => "champions",
        _ => unreachable!("the map covers every cell"),
    })
}
