/// Folds one row's condition bits into the state.
#[inline]
pub fn update(state: &mut u32, row_bits: u32) {
    *state |= row_bits;
}

#[inline]
pub fn merge(a: u32, b: u32) -> u32 {
    a | b
}

/// Element 0: cond1 held for some row; element i: cond1 and cond(i+1) each held for some row.
pub fn finish(state: u32, n: usize, out: &mut Vec<u8>) {
    let first = state & 1;
    out.push(first as u8);
    for i in 1..n {
        out.push((first & (state >> i) & 1) as u8);
    }
}
