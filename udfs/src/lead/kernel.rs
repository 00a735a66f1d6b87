/// One event's contribution: `points x 0.5^(age / half_life)` (age and half-life in the same
/// unit); events after `as_of` (negative age) count nothing.
#[inline]
pub fn decayed(points: f64, age: f64, half_life: f64) -> f64 {
    if age < 0.0 {
        0.0
    } else {
        points * (-(age / half_life) * std::f64::consts::LN_2).exp()
    }
}

/// The stage of a score with thresholds `t1 <= t2 <= t3`.
pub fn stage(score: f64, t: [f64; 3]) -> &'static str {
    if score < t[0] {
        "awareness"
    } else if score < t[1] {
        "interest"
    } else if score < t[2] {
        "consideration"
    } else {
        "decision"
    }
}
