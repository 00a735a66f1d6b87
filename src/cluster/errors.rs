//! A cluster query's errors as one line a user can act on.
//!
//! The patched Ballista names the scheduler when it is lost ("lost the scheduler at
//! df://HOST:PORT: broken pipe") and the executor a task failed on ("executor HOST:PORT: ...");
//! what is left here is the job's wrapping ("Job 038J... failed: Job failed due to stage 2
//! failed: ... Task failed due to runtime execution error: ..."), which says nothing the user can
//! use, and a missing file, the commonest failure of a cluster whose processes do not share the
//! table's path, said plainly. Every plan a cluster session runs is wrapped in [`OneLineErrors`]
//! by its query planner ([`Planner`]), so the shell, the servers and the reports all show this.

use std::sync::Arc;

use datafusion::catalog::Session;
use datafusion::error::{DataFusionError, Result};
use datafusion::execution::context::QueryPlanner;
use datafusion::execution::{SendableRecordBatchStream, TaskContext};
use datafusion::logical_expr::LogicalPlan;
use datafusion::physical_plan::stream::RecordBatchStreamAdapter;
use datafusion::physical_plan::{DisplayAs, DisplayFormatType, ExecutionPlan, PlanProperties};
use futures::StreamExt;

/// The error of a cluster job, simplified (see the module docs); other errors as they are.
pub fn simplify(e: DataFusionError) -> DataFusionError {
    let DataFusionError::Execution(message) = e.find_root() else {
        return e;
    };
    match simplified(message) {
        Some(line) => DataFusionError::Execution(line),
        None => e,
    }
}

fn simplified(message: &str) -> Option<String> {
    // "Job <id> failed: Job failed due to stage <n> failed: executor <addr>: Task failed due
    // to runtime execution error: <cause>"
    let rest = message.strip_prefix("Job ")?;
    let (_, rest) = rest.split_once(" failed: ")?;
    let rest = rest.split_once(" failed: ").map_or(rest, |(head, tail)| {
        if head.starts_with("Job failed due to stage") {
            tail
        } else {
            rest
        }
    });
    let (executor, cause) = match rest.strip_prefix("executor ") {
        Some(r) => match r.split_once(": ") {
            Some((addr, cause)) => (Some(addr), cause),
            None => (None, rest),
        },
        None => (None, rest),
    };
    let cause = cause
        .trim_start_matches("Task failed due to runtime execution error: ")
        .trim_start_matches("Task failed due to IO error: ");
    let on = executor.map_or_else(|| "an executor".to_string(), |a| format!("executor {a}"));
    // "... Object at location /data/p/part-0.parquet not found: No such file or directory ..."
    if let Some((_, after)) = cause.split_once("Object at location ")
        && let Some((path, why)) = after.split_once(" not found")
    {
        let why = why.trim_start_matches(':').trim();
        return Some(format!(
            "{on} cannot read '{path}': {} (a --cluster table's path must be the same on the \
             client, the scheduler and every executor: a shared file system, or object storage)",
            if why.is_empty() { "not found" } else { why }
        ));
    }
    Some(format!("{on}: {cause}"))
}

/// The query planner of a cluster client session: Ballista's, after loading the newest version of
/// every store the plan reads (the plan sent names their files), with every plan's errors
/// simplified.
#[derive(Debug)]
pub struct Planner {
    pub inner: Arc<dyn QueryPlanner + Send + Sync>,
}

#[async_trait::async_trait]
impl QueryPlanner for Planner {
    async fn create_physical_plan(
        &self,
        plan: &LogicalPlan,
        session: &dyn Session,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        // The stores the plan reads, at their newest version (the plan names their files).
        crate::engine::store::provider::refresh_stores(
            plan,
            session.execution_props().query_execution_start_time,
        )
        .await?;
        let physical = self.inner.create_physical_plan(plan, session).await?;
        Ok(Arc::new(OneLineErrors { input: physical }))
    }
}

/// A plan whose errors are [`simplify`]d; otherwise its input.
#[derive(Debug)]
pub struct OneLineErrors {
    input: Arc<dyn ExecutionPlan>,
}

impl DisplayAs for OneLineErrors {
    fn fmt_as(&self, _t: DisplayFormatType, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        write!(f, "OneLineErrors")
    }
}

impl ExecutionPlan for OneLineErrors {
    fn name(&self) -> &str {
        "OneLineErrors"
    }

    fn properties(&self) -> &Arc<PlanProperties> {
        self.input.properties()
    }

    fn children(&self) -> Vec<&Arc<dyn ExecutionPlan>> {
        vec![&self.input]
    }

    fn apply_expressions(
        &self,
        _f: &mut dyn FnMut(
            &Arc<dyn datafusion::physical_plan::PhysicalExpr>,
        ) -> Result<datafusion::common::tree_node::TreeNodeRecursion>,
    ) -> Result<datafusion::common::tree_node::TreeNodeRecursion> {
        Ok(datafusion::common::tree_node::TreeNodeRecursion::Continue)
    }

    fn with_new_children(
        self: Arc<Self>,
        mut children: Vec<Arc<dyn ExecutionPlan>>,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        match children.pop() {
            Some(input) if children.is_empty() => Ok(Arc::new(OneLineErrors { input })),
            _ => Err(DataFusionError::Internal(
                "OneLineErrors takes one input".into(),
            )),
        }
    }

    fn execute(
        &self,
        partition: usize,
        context: Arc<TaskContext>,
    ) -> Result<SendableRecordBatchStream> {
        let stream = self.input.execute(partition, context).map_err(simplify)?;
        let schema = stream.schema();
        Ok(Box::pin(RecordBatchStreamAdapter::new(
            schema,
            stream.map(|r| r.map_err(simplify)),
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn job_failures_become_one_line() {
        let missing = "Job 038J2V6FNE000 failed: Job failed due to stage 1 failed: executor \
                       10.0.0.7:50051: Task failed due to runtime execution error: Parquet error: \
                       General error: Failed to fetch metadata for file tmp/p/part-0.parquet: \
                       Object Store error: Object at location /tmp/p/part-0.parquet not found: \
                       No such file or directory (os error 2)";
        let line = simplified(missing).unwrap();
        assert!(
            line.starts_with(
                "executor 10.0.0.7:50051 cannot read '/tmp/p/part-0.parquet': No such file or \
                 directory (os error 2)"
            ),
            "{line}"
        );
        let other = "Job 1 failed: Job failed due to stage 3 failed: executor h:1: Task failed \
                     due to runtime execution error: Resources exhausted: out of memory";
        assert_eq!(
            simplified(other).unwrap(),
            "executor h:1: Resources exhausted: out of memory"
        );
        assert_eq!(
            simplified("lost the scheduler at df://h:1: broken pipe"),
            None
        );
    }
}
