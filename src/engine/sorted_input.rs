//! What the operators over input sorted by its keys share ([`super::sorted_aggregate`],
//! [`super::sorted_window`]): the key runs of a batch, the rule pass that replaces matching
//! nodes, and the stream that folds the input a batch at a time.

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use datafusion::arrow::array::{ArrayRef, make_comparator};
use datafusion::arrow::compute::SortOptions;
use datafusion::arrow::datatypes::SchemaRef;
use datafusion::arrow::record_batch::RecordBatch;
use datafusion::common::tree_node::{Transformed, TreeNode};
use datafusion::error::Result;
use datafusion::physical_plan::metrics::BaselineMetrics;
use datafusion::physical_plan::{ExecutionPlan, RecordBatchStream, SendableRecordBatchStream};
use futures::{Stream, StreamExt};

/// The runs of equal `keys` in a batch sorted by them: the first row of each run, and whether
/// the first run continues `open` (the key of the previous batch's last row, one row per column).
pub fn key_runs(keys: &[ArrayRef], open: Option<&[ArrayRef]>) -> Result<(Vec<usize>, bool)> {
    let starts = datafusion::arrow::compute::partition(keys)?
        .ranges()
        .into_iter()
        .map(|r| r.start)
        .collect();
    let continues = match open {
        Some(open) if keys.first().is_some_and(|k| !k.is_empty()) => {
            let mut eq = true;
            for (o, k) in open.iter().zip(keys) {
                let cmp = make_comparator(o.as_ref(), k.as_ref(), SortOptions::default())?;
                eq &= cmp(0, 0).is_eq();
            }
            eq
        }
        _ => false,
    };
    Ok((starts, continues))
}

/// A node's replacement, if it has one.
pub type Rewrite = fn(&Arc<dyn ExecutionPlan>) -> Option<Arc<dyn ExecutionPlan>>;

/// `plan` with every node `rewrite` replaces replaced (bottom up): a rule's `optimize`.
pub fn replace_nodes(
    plan: Arc<dyn ExecutionPlan>,
    rewrite: Rewrite,
) -> Result<Arc<dyn ExecutionPlan>> {
    plan.transform_up(|plan| {
        Ok(match rewrite(&plan) {
            Some(p) => Transformed::yes(p),
            None => Transformed::no(plan),
        })
    })
    .map(|t| t.data)
}

/// An operator's work, a batch at a time.
pub trait BatchFold: Send + Unpin {
    /// Folds one input batch; returns what it completed, if anything.
    fn fold(&mut self, batch: &RecordBatch) -> Result<Option<RecordBatch>>;
    /// At the end of the input: what is still open, if anything.
    fn finish(&mut self) -> Result<Option<RecordBatch>> {
        Ok(None)
    }
}

/// The output stream of `fold` over `input` (one error ends it).
pub fn fold_stream<F: BatchFold + 'static>(
    input: SendableRecordBatchStream,
    schema: SchemaRef,
    fold: F,
    metrics: BaselineMetrics,
) -> SendableRecordBatchStream {
    Box::pin(FoldStream {
        input,
        schema,
        fold,
        metrics,
        done: false,
    })
}

struct FoldStream<F> {
    input: SendableRecordBatchStream,
    schema: SchemaRef,
    fold: F,
    metrics: BaselineMetrics,
    done: bool,
}

impl<F: BatchFold> Stream for FoldStream<F> {
    type Item = Result<RecordBatch>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        loop {
            if self.done {
                return Poll::Ready(None);
            }
            let polled = match self.input.poll_next_unpin(cx) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(p) => p,
            };
            let elapsed = self.metrics.elapsed_compute().clone();
            let timer = elapsed.timer();
            let out = match polled {
                Some(Ok(batch)) => self.fold.fold(&batch),
                Some(Err(e)) => Err(e),
                None => {
                    self.done = true;
                    self.fold.finish()
                }
            };
            timer.done();
            match out {
                Ok(Some(batch)) => {
                    self.metrics.record_output(batch.num_rows());
                    return Poll::Ready(Some(Ok(batch)));
                }
                Ok(None) => continue,
                Err(e) => {
                    self.done = true;
                    return Poll::Ready(Some(Err(e)));
                }
            }
        }
    }
}

impl<F: BatchFold> RecordBatchStream for FoldStream<F> {
    fn schema(&self) -> SchemaRef {
        Arc::clone(&self.schema)
    }
}
