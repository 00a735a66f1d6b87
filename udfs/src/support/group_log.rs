//! Per-group logs of entries (what aggregates that see every row of a group keep) and bucketing
//! entries by group with a counting sort.

use datafusion::logical_expr::EmitTo;
/// Per-group values of aggregates that must see every row of a group (distinct days, funnel
/// events): one flat log of (group, value) entries for all groups, no per-group allocation.
/// Emitting buckets the entries by group with a counting sort (O(entries)).
#[derive(Debug, Default)]
pub struct GroupLog<V> {
    groups: Vec<u32>,
    values: Vec<V>,
}

impl<V: Copy + Default> GroupLog<V> {
    #[inline]
    pub fn push(&mut self, group: usize, value: V) {
        self.groups.push(group as u32);
        self.values.push(value);
    }

    pub fn size(&self) -> usize {
        self.groups.capacity() * 4 + self.values.capacity() * size_of::<V>()
    }

    /// Takes the entries of groups `emit_to` (of `n` groups emitted) out, bucketed by group:
    /// `values[offsets[g]..offsets[g + 1]]` are group g's, in no particular order. Remaining
    /// groups are renumbered from 0. The bucketing permutes the entries in place (an American
    /// flag sort), so emitting allocates no second copy of the log.
    pub fn take(&mut self, emit_to: EmitTo, n: usize) -> (Vec<usize>, Vec<V>) {
        let (mut groups, mut values) = self.take_raw(emit_to, n);
        let offsets = bucket_in_place(&mut groups, &mut values, n);
        (offsets, values)
    }

    /// Takes the entries of groups `emit_to` (of `n` groups emitted) out as they were logged:
    /// (group of each entry, entry). Remaining groups are renumbered from 0.
    fn take_raw(&mut self, emit_to: EmitTo, n: usize) -> (Vec<u32>, Vec<V>) {
        match emit_to {
            EmitTo::All => (
                std::mem::take(&mut self.groups),
                std::mem::take(&mut self.values),
            ),
            EmitTo::First(_) => {
                let (mut mine_g, mut mine_v) = (vec![], vec![]);
                let (mut rest_g, mut rest_v) = (vec![], vec![]);
                for (g, v) in self.groups.iter().zip(&self.values) {
                    if (*g as usize) < n {
                        mine_g.push(*g);
                        mine_v.push(*v);
                    } else {
                        rest_g.push(*g - n as u32);
                        rest_v.push(*v);
                    }
                }
                self.groups = rest_g;
                self.values = rest_v;
                (mine_g, mine_v)
            }
        }
    }
}

/// Per-group start offsets (`n + 1` of them) of entries whose groups are `groups`.
pub fn group_offsets(groups: &[u32], n: usize) -> Vec<usize> {
    let mut offsets = vec![0usize; n + 1];
    for g in groups {
        offsets[*g as usize + 1] += 1;
    }
    for g in 0..n {
        offsets[g + 1] += offsets[g];
    }
    offsets
}

/// Buckets `values` by `groups` (of `n` groups) in place, an American flag sort: afterwards
/// `values[offsets[g]..offsets[g + 1]]` are group g's, in no particular order.
pub fn bucket_in_place<V>(groups: &mut [u32], values: &mut [V], n: usize) -> Vec<usize> {
    bucket_in_place_with(groups, n, |i, j| values.swap(i, j))
}

/// [`bucket_in_place`] for entries kept in several vectors: `swap(i, j)` swaps entries i and j
/// of each of them (`groups` is swapped here).
pub fn bucket_in_place_with(
    groups: &mut [u32],
    n: usize,
    mut swap: impl FnMut(usize, usize),
) -> Vec<usize> {
    let offsets = group_offsets(groups, n);
    let mut next: Vec<usize> = offsets[..n].to_vec();
    for g in 0..n {
        let end = offsets[g + 1];
        while next[g] < end {
            let i = next[g];
            let dest = groups[i] as usize;
            if dest == g {
                next[g] += 1;
            } else {
                let j = next[dest];
                groups.swap(i, j);
                swap(i, j);
                next[dest] += 1;
            }
        }
    }
    offsets
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn group_log_buckets_every_entry_by_group() {
        let mut log = GroupLog::<u32>::default();
        // Entry value = group * 1000 + sequence number, in a scrambled group order.
        let groups = [3usize, 0, 2, 3, 1, 0, 3, 2, 2, 0, 4, 3];
        for (k, g) in groups.iter().enumerate() {
            log.push(*g, (*g * 1000 + k) as u32);
        }
        let (offsets, values) = log.take(EmitTo::All, 5);
        assert_eq!(offsets, vec![0, 3, 4, 7, 11, 12]);
        for g in 0..5 {
            let mut got: Vec<u32> = values[offsets[g]..offsets[g + 1]].to_vec();
            got.sort();
            let want: Vec<u32> = groups
                .iter()
                .enumerate()
                .filter(|(_, x)| **x == g)
                .map(|(k, _)| (g * 1000 + k) as u32)
                .collect();
            assert_eq!(got, want, "group {g}");
        }
        // Emitting the first groups keeps and renumbers the rest.
        let mut log = GroupLog::<u32>::default();
        for (k, g) in groups.iter().enumerate() {
            log.push(*g, k as u32);
        }
        let (offsets, _) = log.take(EmitTo::First(2), 2);
        assert_eq!(offsets, vec![0, 3, 4]);
        let (offsets, _) = log.take(EmitTo::All, 3);
        assert_eq!(offsets, vec![0, 3, 7, 8]);
    }
}
