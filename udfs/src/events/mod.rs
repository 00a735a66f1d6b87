//! The adapter shared by the event-sequence aggregates (`window_funnel`, `sequence_match`, ...).
//!
//! A group's events are (timestamp, tag) pairs. Events from input rows go to one flat
//! [`EventLog`] (group, timestamp and tag vectors side by side); emitting the partial state
//! buckets them by group in place and hands the timestamp and tag vectors to Arrow as the state's
//! lists, without a copy. Partial states merged in the final phase are not copied either: their
//! list arrays are kept whole and the group keeps references to its rows, so the final phase
//! holds each event once, in the arrays the partial phase made.
//! On emit, each group's events are gathered into one scratch buffer and handed to the
//! aggregate, which says what they answer ([`EventAggregate::finish`]).
//!
//! An aggregate may also settle a group's answer before all its events are seen (the funnel in
//! its default mode, once the last step is reached): the adapter then feeds each event to the
//! group's streaming state as it arrives, stops keeping a settled group's events, drops the ones
//! it kept, and passes a settled group on as a flag without events.
//!
//! The aggregates built on it: [`funnel`] (`window_funnel`, `window_funnel_times`) and
//! [`sequence`] (`sequence_match`, `sequence_count`, `sequence_match_events`).
//! [`next_node`] (`sequence_next_node`) keeps each event's value too, so it has its own adapter. The adapter knows none of them: an
//! aggregate's streaming state is its own type ([`EventAggregate::Progress`]).

use std::sync::Arc;

use datafusion::arrow::array::{
    Array, ArrayRef, AsArray, BooleanArray, Int64Array, ListArray, UInt32Array,
};
use datafusion::arrow::buffer::{OffsetBuffer, ScalarBuffer};
use datafusion::arrow::datatypes::{DataType, Field, FieldRef, Int64Type, UInt32Type};
use datafusion::common::Result;
use datafusion::logical_expr::{EmitTo, GroupsAccumulator};

use crate::support::time::{TickUnit, ticks_of};
use crate::support::{
    bucket_in_place_with, counts_to_offsets, group_offsets, list_array, list_state_fields, resize,
    row_mask,
};

pub mod funnel;
pub mod next_node;
pub mod sequence;

/// A group's streaming state, for aggregates that can settle a group's answer early.
pub trait Streaming: Default + Clone + Send + Sync + std::fmt::Debug + 'static {
    /// True once the group's answer can no longer change.
    fn settled(&self) -> bool;

    /// Marks the group settled (a partial state from another partition said so).
    fn settle(&mut self);
}

/// The streaming state of an aggregate that never settles early.
impl Streaming for () {
    fn settled(&self) -> bool {
        false
    }

    fn settle(&mut self) {}
}

/// An aggregate over each group's (timestamp, tag) events.
pub trait EventAggregate: Send + Sync + 'static {
    /// A group's streaming state (`()` for an aggregate that never settles early).
    type Progress: Streaming;

    /// Feeds every event of the batch to `f(row, ts, tag)`, rows in increasing order.
    fn events(
        &self,
        values: &[ArrayRef],
        filter: Option<&BooleanArray>,
        f: &mut impl FnMut(usize, i64, u32),
    ) -> Result<()>;

    /// The answers of the emitted groups `0..events.groups()`; `events.get(g)` is group g's
    /// events in no particular order (the aggregate sorts them as it needs), or `None` when the
    /// group's answer is settled.
    fn finish(&self, events: &mut GroupEvents<'_>) -> Result<ArrayRef>;

    /// How many `i64` slots of streaming state a group has beside its
    /// [`EventAggregate::Progress`]; 0 (the default) when the aggregate never settles an answer
    /// early.
    fn progress_slots(&self) -> usize {
        0
    }

    /// Feeds one event to a group's streaming state; true once the group's answer can no longer
    /// change, whatever events arrive later.
    fn feed(
        &self,
        _progress: &mut Self::Progress,
        _slots: &mut [i64],
        _ts: i64,
        _tag: u32,
    ) -> bool {
        false
    }
}

/// Walks the rows that have a timestamp (`ts`) and pass the FILTER, calling `f(row, ticks, mask)`
/// with the bitmask of the `conditions` that hold (bit k for `conditions[k]`, at most 32; NULL
/// counts as false). The masks are built column by column from the conditions' bitmaps.
pub fn for_each_condition_row(
    ts: &ArrayRef,
    conditions: &[ArrayRef],
    unit: TickUnit,
    filter: Option<&BooleanArray>,
    mut f: impl FnMut(usize, i64, u32),
) -> Result<()> {
    let (ts, ts_nulls) = ticks_of(ts, unit)?;
    let mut masks = vec![0u32; ts.len()];
    for (k, c) in conditions.iter().enumerate() {
        let c = c.as_boolean();
        let holds = match c.nulls() {
            Some(n) => c.values() & n.inner(),
            None => c.values().clone(),
        };
        for row in holds.set_indices() {
            masks[row] |= 1 << k;
        }
    }
    match row_mask(filter, &[ts_nulls.as_ref()]) {
        None => {
            for (row, (&t, &m)) in ts.iter().zip(&masks).enumerate() {
                f(row, t, m);
            }
        }
        Some(valid) => {
            for row in valid.valid_indices() {
                f(row, ts[row], masks[row]);
            }
        }
    }
    Ok(())
}

/// The partial-state fields: timestamps and tags, one list each per group, and whether the
/// group's answer is settled (then both lists are empty).
pub fn state_fields(name: &str) -> Vec<FieldRef> {
    let mut fields = list_state_fields(name, &[("ts", DataType::Int64), ("tag", DataType::UInt32)]);
    fields.push(Arc::new(Field::new(
        format!("{name}[settled]"),
        DataType::Boolean,
        true,
    )));
    fields
}

/// Every group's events from input rows, as three vectors side by side: (group, timestamp, tag).
#[derive(Debug, Default)]
pub struct EventLog {
    groups: Vec<u32>,
    ts: Vec<i64>,
    tags: Vec<u32>,
}

impl EventLog {
    #[inline]
    fn push(&mut self, group: usize, ts: i64, tag: u32) {
        self.groups.push(group as u32);
        self.ts.push(ts);
        self.tags.push(tag);
    }

    fn len(&self) -> usize {
        self.groups.len()
    }

    fn size(&self) -> usize {
        self.groups.capacity() * 4 + self.ts.capacity() * 8 + self.tags.capacity() * 4
    }

    /// Keeps only the events of groups for which `keep(group)` holds, in place, in order.
    fn retain(&mut self, keep: impl Fn(u32) -> bool) {
        let mut w = 0;
        for r in 0..self.groups.len() {
            let g = self.groups[r];
            if keep(g) {
                self.groups[w] = g;
                self.ts[w] = self.ts[r];
                self.tags[w] = self.tags[r];
                w += 1;
            }
        }
        self.groups.truncate(w);
        self.ts.truncate(w);
        self.tags.truncate(w);
    }

    /// Takes the events of groups `emit_to` (of `n` emitted) out as logged; the remaining groups
    /// are renumbered from 0.
    fn take(&mut self, emit_to: EmitTo, n: usize) -> EventLog {
        match emit_to {
            EmitTo::All => std::mem::take(self),
            EmitTo::First(_) => {
                let (mut mine, mut rest) = (EventLog::default(), EventLog::default());
                for k in 0..self.len() {
                    let g = self.groups[k] as usize;
                    if g < n {
                        mine.push(g, self.ts[k], self.tags[k]);
                    } else {
                        rest.push(g - n, self.ts[k], self.tags[k]);
                    }
                }
                *self = rest;
                mine
            }
        }
    }

    /// Buckets the events by group (of `n`) in place; returns the groups' offsets.
    fn bucket(&mut self, n: usize) -> Vec<usize> {
        let (ts, tags) = (&mut self.ts, &mut self.tags);
        bucket_in_place_with(&mut self.groups, n, |i, j| {
            ts.swap(i, j);
            tags.swap(i, j);
        })
    }
}

/// The lists of one merged partial-state batch, kept whole; `live` counts the references to
/// its rows not yet emitted.
#[derive(Clone)]
struct Chunk {
    offsets: OffsetBuffer<i32>,
    ts: ScalarBuffer<i64>,
    tags: ScalarBuffer<u32>,
    live: usize,
}

impl Chunk {
    /// The bytes of the rows' events (a sliced list shares its values with other slices, so
    /// only the referenced range counts).
    fn bytes(&self) -> usize {
        let events = (self.offsets.last().copied().unwrap_or(0)
            - self.offsets.first().copied().unwrap_or(0)) as usize;
        self.offsets.inner().inner().len() + events * (size_of::<i64>() + size_of::<u32>())
    }

    fn range(&self, row: u32) -> std::ops::Range<usize> {
        let r = row as usize;
        self.offsets[r] as usize..self.offsets[r + 1] as usize
    }
}

/// Emitted groups' references bucketed by group: (offsets, (chunk, row) of each, the chunks).
type TakenRefs = (Vec<usize>, Vec<(u32, u32)>, Vec<Option<Chunk>>);

/// A group's reference to one row of a merged chunk.
#[derive(Debug, Clone, Copy)]
struct Ref {
    group: u32,
    chunk: u32,
    row: u32,
}

/// The events of the groups an emit takes, as kept: the log's entries (with their groups), the
/// merged rows' references bucketed by group, and which groups are settled.
struct Parts {
    log: EventLog,
    ref_offsets: Vec<usize>,
    refs: Vec<(u32, u32)>,
    chunks: Vec<Option<Chunk>>,
    settled: Vec<bool>,
}

impl Parts {
    fn chunk_rows(&self, g: usize) -> impl Iterator<Item = (&Chunk, u32)> {
        self.refs[self.ref_offsets[g]..self.ref_offsets[g + 1]]
            .iter()
            .map(|&(c, row)| {
                (
                    self.chunks[c as usize].as_ref().expect("referenced chunk"),
                    row,
                )
            })
    }

    /// Buckets the log by group in place, for gathering one group at a time.
    fn into_taken(mut self) -> Taken {
        let log_offsets = self.log.bucket(self.settled.len());
        Taken {
            log_offsets,
            parts: self,
        }
    }

    /// The partial state. With no merged rows (the partial phase), the log bucketed in place
    /// *is* the state: its timestamp and tag vectors become the lists' values without a copy.
    /// Otherwise each group's events are written once into new arrays (log entries in the order
    /// logged, then the merged rows').
    fn into_state(mut self) -> Vec<ArrayRef> {
        let n = self.settled.len();
        let settled = Arc::new(BooleanArray::from(std::mem::take(&mut self.settled)));
        if self.refs.is_empty() {
            let offsets = self.log.bucket(n);
            let EventLog { ts, tags, .. } = self.log;
            return vec![
                list_array(&offsets, Arc::new(Int64Array::from(ts))),
                list_array(&offsets, Arc::new(UInt32Array::from(tags))),
                settled,
            ];
        }
        let log_counts = group_offsets(&self.log.groups, n);
        let mut offsets = Vec::with_capacity(n + 1);
        offsets.push(0usize);
        for g in 0..n {
            let merged: usize = self
                .chunk_rows(g)
                .map(|(ch, row)| ch.range(row).len())
                .sum();
            offsets.push(offsets[g] + log_counts[g + 1] - log_counts[g] + merged);
        }
        let total = offsets[n];
        let (mut ts, mut tags) = (vec![0i64; total], vec![0u32; total]);
        let mut next = offsets[..n].to_vec();
        for k in 0..self.log.len() {
            let pos = &mut next[self.log.groups[k] as usize];
            (ts[*pos], tags[*pos]) = (self.log.ts[k], self.log.tags[k]);
            *pos += 1;
        }
        self.log = EventLog::default();
        for (g, pos) in next.iter_mut().enumerate() {
            for (ch, row) in self.chunk_rows(g) {
                let r = ch.range(row);
                let len = r.len();
                ts[*pos..*pos + len].copy_from_slice(&ch.ts[r.clone()]);
                tags[*pos..*pos + len].copy_from_slice(&ch.tags[r]);
                *pos += len;
            }
        }
        vec![
            list_array(&offsets, Arc::new(Int64Array::from(ts))),
            list_array(&offsets, Arc::new(UInt32Array::from(tags))),
            settled,
        ]
    }
}

/// [`Parts`] with the log bucketed by group.
struct Taken {
    log_offsets: Vec<usize>,
    parts: Parts,
}

impl Taken {
    fn groups(&self) -> usize {
        self.parts.settled.len()
    }

    /// Calls `f(ts, tag)` for every event of group `g`.
    #[inline]
    fn for_each(&self, g: usize, mut f: impl FnMut(i64, u32)) {
        let log = &self.parts.log;
        for k in self.log_offsets[g]..self.log_offsets[g + 1] {
            f(log.ts[k], log.tags[k]);
        }
        for (ch, row) in self.parts.chunk_rows(g) {
            for k in ch.range(row) {
                f(ch.ts[k], ch.tags[k]);
            }
        }
    }
}

/// Each emitted group's events, gathered one group at a time into a reused buffer.
pub struct GroupEvents<'a> {
    taken: &'a Taken,
    scratch: Vec<(i64, u32)>,
}

impl GroupEvents<'_> {
    /// The number of groups emitted.
    pub fn groups(&self) -> usize {
        self.taken.groups()
    }

    /// Group `g`'s events in no particular order, or `None` when its answer is settled.
    pub fn get(&mut self, g: usize) -> Option<&mut [(i64, u32)]> {
        if self.taken.parts.settled[g] {
            return None;
        }
        self.scratch.clear();
        let scratch = &mut self.scratch;
        self.taken.for_each(g, |ts, tag| scratch.push((ts, tag)));
        Some(&mut self.scratch)
    }
}

/// Counting sort of references by group (of `n`): (offsets, (chunk, row) of each).
fn bucket_refs(refs: &[Ref], n: usize) -> (Vec<usize>, Vec<(u32, u32)>) {
    let groups: Vec<u32> = refs.iter().map(|r| r.group).collect();
    let offsets = group_offsets(&groups, n);
    let mut next = offsets[..n].to_vec();
    let mut out = vec![(0u32, 0u32); refs.len()];
    for r in refs {
        let pos = &mut next[r.group as usize];
        out[*pos] = (r.chunk, r.row);
        *pos += 1;
    }
    (offsets, out)
}

/// Per-group streaming state of an aggregate that settles answers early (all empty when
/// `slots` is 0), and how many of the log's events belong to settled groups.
struct Settling<P> {
    /// `agg.progress_slots()`.
    slots: usize,
    progress: Vec<P>,
    starts: Vec<i64>,
    /// Events each group has in the log.
    logged: Vec<u32>,
    dropped: usize,
}

impl<P> Default for Settling<P> {
    fn default() -> Self {
        Self {
            slots: 0,
            progress: vec![],
            starts: vec![],
            logged: vec![],
            dropped: 0,
        }
    }
}

impl<P: Streaming> Settling<P> {
    fn grow(&mut self, groups: usize) {
        if self.slots > 0 {
            resize(&mut self.progress, groups, P::default());
            resize(&mut self.starts, groups * self.slots, 0);
            resize(&mut self.logged, groups, 0);
        }
    }

    fn settled(&self, g: usize) -> bool {
        self.slots > 0 && self.progress[g].settled()
    }

    /// Feeds one event of group `g` to its streaming state; true once the group is settled.
    #[inline]
    fn feed<A: EventAggregate<Progress = P>>(
        &mut self,
        agg: &A,
        g: usize,
        ts: i64,
        tag: u32,
    ) -> bool {
        let p = &mut self.progress[g];
        if p.settled() {
            return true;
        }
        let starts = &mut self.starts[g * self.slots..(g + 1) * self.slots];
        if agg.feed(p, starts, ts, tag) {
            self.dropped += self.logged[g] as usize;
            return true;
        }
        false
    }

    /// Keeps one event of group `g` in `log` and feeds it to the group's streaming state, unless
    /// the group is settled (only when `slots > 0`).
    #[inline]
    fn push<A: EventAggregate<Progress = P>>(
        &mut self,
        agg: &A,
        log: &mut EventLog,
        g: usize,
        ts: i64,
        tag: u32,
    ) {
        if self.progress[g].settled() {
            return;
        }
        log.push(g, ts, tag);
        self.logged[g] += 1;
        self.feed(agg, g, ts, tag);
    }

    /// Settles group `g` (its partial state said so).
    fn settle(&mut self, g: usize) {
        let p = &mut self.progress[g];
        if !p.settled() {
            p.settle();
            self.dropped += self.logged[g] as usize;
        }
    }

    /// Forgets settled groups' events from `log`, when forced or once they are most of it.
    fn compact(&mut self, log: &mut EventLog, force: bool) {
        if self.dropped > 0 && (force || self.dropped * 2 > log.len()) {
            let progress = &self.progress;
            log.retain(|g| !progress[g as usize].settled());
            self.dropped = 0;
        }
    }

    /// Takes the first `n` groups' flags out (`emit_to` says whether that is all of them).
    fn take(&mut self, emit_to: EmitTo, n: usize) -> Vec<bool> {
        if self.slots == 0 {
            return vec![false; n];
        }
        let taken = emit_to.take_needed(&mut self.progress);
        emit_to.take_needed(&mut self.logged);
        self.starts.drain(..n * self.slots);
        taken.iter().map(|p| p.settled()).collect()
    }
}

/// The groups accumulator of an [`EventAggregate`].
pub struct EventGroups<A: EventAggregate> {
    agg: A,
    log: EventLog,
    chunks: Vec<Option<Chunk>>,
    refs: Vec<Ref>,
    /// Bytes of the chunks kept.
    chunk_bytes: usize,
    groups: usize,
    settling: Settling<A::Progress>,
}

impl<A: EventAggregate> EventGroups<A> {
    pub fn new(agg: A) -> Self {
        Self {
            settling: Settling {
                slots: agg.progress_slots(),
                ..Settling::default()
            },
            agg,
            log: EventLog::default(),
            chunks: vec![],
            refs: vec![],
            chunk_bytes: 0,
            groups: 0,
        }
    }

    fn grow(&mut self, total_num_groups: usize) {
        self.groups = self.groups.max(total_num_groups);
        self.settling.grow(self.groups);
    }

    /// Merges partial states: settled groups are settled, other rows are kept by reference
    /// (and fed to the streaming state, when the aggregate has one).
    fn merge_states(&mut self, values: &[ArrayRef], group_of: impl Fn(usize) -> usize) {
        let ts: &ListArray = values[0].as_list::<i32>();
        let tags: &ListArray = values[1].as_list::<i32>();
        let settled = values[2].as_boolean();
        let chunk = Chunk {
            offsets: ts.offsets().clone(),
            ts: ts.values().as_primitive::<Int64Type>().values().clone(),
            tags: tags.values().as_primitive::<UInt32Type>().values().clone(),
            live: 0,
        };
        let c = self.chunks.len() as u32;
        let mut live = 0;
        let st = &mut self.settling;
        for row in 0..ts.len() {
            let g = group_of(row);
            if settled.is_valid(row) && settled.value(row) {
                st.settle(g);
                continue;
            }
            let range = chunk.range(row as u32);
            if range.is_empty() || st.settled(g) {
                continue;
            }
            if st.slots > 0
                && range
                    .clone()
                    .any(|k| st.feed(&self.agg, g, chunk.ts[k], chunk.tags[k]))
            {
                continue;
            }
            self.refs.push(Ref {
                group: g as u32,
                chunk: c,
                row: row as u32,
            });
            live += 1;
        }
        if live > 0 {
            self.chunk_bytes += chunk.bytes();
            self.chunks.push(Some(Chunk { live, ..chunk }));
        }
        st.compact(&mut self.log, false);
    }

    /// Takes the first `n` groups' references out (the rest renumbered), bucketed by group:
    /// (offsets, (chunk, row) of each, the chunks); chunks no longer referenced are let go.
    fn take_refs(&mut self, n: usize, settled: &[bool]) -> TakenRefs {
        let mut mine = vec![];
        let mut rest = vec![];
        for r in self.refs.drain(..) {
            if (r.group as usize) < n {
                if !settled[r.group as usize] {
                    mine.push(r);
                }
                if let Some(ch) = self.chunks[r.chunk as usize].as_mut() {
                    ch.live -= 1;
                }
            } else {
                rest.push(Ref {
                    group: r.group - n as u32,
                    ..r
                });
            }
        }
        self.refs = rest;
        let chunks = self.chunks.clone();
        for slot in &mut self.chunks {
            if slot.as_ref().is_some_and(|ch| ch.live == 0) {
                self.chunk_bytes -= slot.take().map_or(0, |ch| ch.bytes());
            }
        }
        if self.chunks.iter().all(Option::is_none) {
            self.chunks.clear();
        }
        let (offsets, refs) = bucket_refs(&mine, n);
        (offsets, refs, chunks)
    }

    fn take(&mut self, emit_to: EmitTo) -> Parts {
        let n = match emit_to {
            EmitTo::All => self.groups,
            EmitTo::First(k) => k,
        };
        self.groups -= n;
        self.settling.compact(&mut self.log, true);
        let settled = self.settling.take(emit_to, n);
        let log = self.log.take(emit_to, n);
        let (ref_offsets, refs, chunks) = self.take_refs(n, &settled);
        Parts {
            log,
            ref_offsets,
            refs,
            chunks,
            settled,
        }
    }
}

impl<A: EventAggregate> GroupsAccumulator for EventGroups<A> {
    fn update_batch(
        &mut self,
        values: &[ArrayRef],
        group_indices: &[usize],
        opt_filter: Option<&BooleanArray>,
        total_num_groups: usize,
    ) -> Result<()> {
        self.grow(total_num_groups);
        let (agg, log, st) = (&self.agg, &mut self.log, &mut self.settling);
        if st.slots == 0 {
            return agg.events(values, opt_filter, &mut |row, ts, tag| {
                log.push(group_indices[row], ts, tag)
            });
        }
        agg.events(values, opt_filter, &mut |row, ts, tag| {
            st.push(agg, log, group_indices[row], ts, tag)
        })?;
        st.compact(log, false);
        Ok(())
    }

    fn merge_batch(
        &mut self,
        values: &[ArrayRef],
        group_indices: &[usize],
        total_num_groups: usize,
    ) -> Result<()> {
        self.grow(total_num_groups);
        self.merge_states(values, |row| group_indices[row]);
        Ok(())
    }

    fn evaluate(&mut self, emit_to: EmitTo) -> Result<ArrayRef> {
        let taken = self.take(emit_to).into_taken();
        self.agg.finish(&mut GroupEvents {
            taken: &taken,
            scratch: vec![],
        })
    }

    fn state(&mut self, emit_to: EmitTo) -> Result<Vec<ArrayRef>> {
        Ok(self.take(emit_to).into_state())
    }

    fn convert_to_state(
        &self,
        values: &[ArrayRef],
        opt_filter: Option<&BooleanArray>,
    ) -> Result<Vec<ArrayRef>> {
        // Each row is its own group; rows arrive in increasing order, so the events are
        // already bucketed.
        let n = values.first().map_or(0, |v| v.len());
        let mut counts = vec![0usize; n + 1];
        let (mut ts, mut tags) = (vec![], vec![]);
        self.agg.events(values, opt_filter, &mut |row, t, tag| {
            counts[row + 1] += 1;
            ts.push(t);
            tags.push(tag);
        })?;
        counts_to_offsets(&mut counts);
        Ok(vec![
            list_array(&counts, Arc::new(Int64Array::from(ts))),
            list_array(&counts, Arc::new(UInt32Array::from(tags))),
            Arc::new(BooleanArray::from(vec![false; n])),
        ])
    }

    fn size(&self) -> usize {
        let st = &self.settling;
        self.log.size()
            + self.chunk_bytes
            + self.refs.capacity() * size_of::<Ref>()
            + self.chunks.capacity() * size_of::<Option<Chunk>>()
            + st.progress.capacity() * size_of::<A::Progress>()
            + st.starts.capacity() * 8
            + st.logged.capacity() * 4
    }
}
