//! The plan codecs every cluster process and client sets: Ballista's, plus the table functions'
//! results ([`PlannedTable`], serialised as their own logical plan), their internal aggregates
//! and the front ends' functions (both by name).

use std::sync::Arc;

use ballista_core::serde::{BallistaLogicalExtensionCodec, BallistaPhysicalExtensionCodec};
use datafusion::arrow::datatypes::SchemaRef;
use datafusion::catalog::TableProvider;
use datafusion::common::TableReference;
use datafusion::datasource::file_format::FileFormatFactory;
use datafusion::error::{DataFusionError, Result};
use datafusion::execution::TaskContext;
use datafusion::logical_expr::{AggregateUDF, Extension, LogicalPlan, ScalarUDF};
use datafusion::physical_plan::ExecutionPlan;
use datafusion_proto::bytes::{
    logical_plan_from_bytes_with_extension_codec, logical_plan_to_bytes_with_extension_codec,
};
use datafusion_proto::logical_plan::LogicalExtensionCodec;
use datafusion_proto::physical_plan::{PhysicalExtensionCodec, PhysicalProtoConverterExtension};
use lifecycle_udfs::table::PlannedTable;

use crate::engine::functions::front_end_udf;
use crate::engine::store::merge::BucketMergeExec;
use crate::engine::store::provider::StoreTable;

/// Marks a serialised [`PlannedTable`] among the table providers of a plan.
const PLANNED_TABLE: &[u8] = b"lifecycle.planned_table\0";
/// Marks a serialised lifecycle store ([`StoreTable`]).
const STORE_TABLE: &[u8] = b"lifecycle.store_table\0";
/// Marks a serialised store bucket merge ([`BucketMergeExec`]): its key and time columns, as
/// JSON; its input (the store's scan) travels as the node's child.
const BUCKET_MERGE: &[u8] = b"lifecycle.bucket_merge\0";

/// Ballista's logical codec, plus the table functions' results ([`PlannedTable`], serialised as
/// their own logical plan) and their internal aggregates (by name).
#[derive(Debug, Default)]
pub struct LogicalCodec {
    ballista: BallistaLogicalExtensionCodec,
}

impl LogicalExtensionCodec for LogicalCodec {
    fn try_decode(
        &self,
        buf: &[u8],
        inputs: &[LogicalPlan],
        ctx: &TaskContext,
    ) -> Result<Extension> {
        self.ballista.try_decode(buf, inputs, ctx)
    }

    fn try_encode(&self, node: &Extension, buf: &mut Vec<u8>) -> Result<()> {
        self.ballista.try_encode(node, buf)
    }

    fn try_decode_table_provider(
        &self,
        buf: &[u8],
        table_ref: &TableReference,
        schema: SchemaRef,
        ctx: &TaskContext,
    ) -> Result<Arc<dyn TableProvider>> {
        if let Some(store) = buf.strip_prefix(STORE_TABLE) {
            return Ok(Arc::new(StoreTable::decode(store)?));
        }
        match buf.strip_prefix(PLANNED_TABLE) {
            Some(plan) => {
                let plan = logical_plan_from_bytes_with_extension_codec(plan, ctx, self)?;
                Ok(Arc::new(PlannedTable::new(plan)))
            }
            None => self
                .ballista
                .try_decode_table_provider(buf, table_ref, schema, ctx),
        }
    }

    fn try_encode_table_provider(
        &self,
        table_ref: &TableReference,
        node: Arc<dyn TableProvider>,
        buf: &mut Vec<u8>,
    ) -> Result<()> {
        if let Some(store) = (node.as_ref() as &dyn std::any::Any).downcast_ref::<StoreTable>() {
            buf.extend_from_slice(STORE_TABLE);
            buf.extend_from_slice(&store.encode()?);
            return Ok(());
        }
        match (node.as_ref() as &dyn std::any::Any).downcast_ref::<PlannedTable>() {
            Some(planned) => {
                let plan = logical_plan_to_bytes_with_extension_codec(planned.plan(), self)?;
                buf.extend_from_slice(PLANNED_TABLE);
                buf.extend_from_slice(&plan);
                Ok(())
            }
            None => self
                .ballista
                .try_encode_table_provider(table_ref, node, buf)
                .map_err(|e| {
                    DataFusionError::Plan(format!(
                        "table '{table_ref}' cannot be sent to the cluster (only Parquet tables \
                         registered with --table can): {}",
                        e.strip_backtrace()
                    ))
                }),
        }
    }

    fn try_decode_file_format(
        &self,
        buf: &[u8],
        ctx: &TaskContext,
    ) -> Result<Arc<dyn FileFormatFactory>> {
        self.ballista.try_decode_file_format(buf, ctx)
    }

    fn try_encode_file_format(
        &self,
        buf: &mut Vec<u8>,
        node: Arc<dyn FileFormatFactory>,
    ) -> Result<()> {
        self.ballista.try_encode_file_format(buf, node)
    }

    fn try_decode_udaf(&self, name: &str, buf: &[u8]) -> Result<Arc<AggregateUDF>> {
        match lifecycle_udfs::internal_aggregate(name) {
            Some(f) => Ok(f),
            None => self.ballista.try_decode_udaf(name, buf),
        }
    }

    fn try_decode_udf(&self, name: &str, buf: &[u8]) -> Result<Arc<ScalarUDF>> {
        match front_end_udf(name) {
            Some(f) => Ok(f),
            None => self.ballista.try_decode_udf(name, buf),
        }
    }
}

/// Ballista's physical codec, plus the table functions' internal aggregates (by name).
#[derive(Debug, Default)]
pub struct PhysicalCodec {
    ballista: BallistaPhysicalExtensionCodec,
}

impl PhysicalExtensionCodec for PhysicalCodec {
    fn try_decode(
        &self,
        buf: &[u8],
        inputs: &[Arc<dyn ExecutionPlan>],
        ctx: &TaskContext,
        proto_converter: &dyn PhysicalProtoConverterExtension,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        if let Some(doc) = buf.strip_prefix(BUCKET_MERGE) {
            let bad = |why: String| {
                DataFusionError::Internal(format!("bad store bucket merge encoding: {why}"))
            };
            let (key, order): (String, String) =
                serde_json::from_slice(doc).map_err(|e| bad(e.to_string()))?;
            let [input] = inputs else {
                return Err(bad(format!("{} inputs", inputs.len())));
            };
            return Ok(Arc::new(BucketMergeExec::try_new(
                Arc::clone(input),
                key,
                order,
            )?));
        }
        self.ballista.try_decode(buf, inputs, ctx, proto_converter)
    }

    fn try_encode(
        &self,
        node: Arc<dyn ExecutionPlan>,
        buf: &mut Vec<u8>,
        proto_converter: &dyn PhysicalProtoConverterExtension,
    ) -> Result<()> {
        if let Some(merge) = node.downcast_ref::<BucketMergeExec>() {
            buf.extend_from_slice(BUCKET_MERGE);
            serde_json::to_writer(&mut *buf, &merge.columns())
                .map_err(|e| DataFusionError::External(Box::new(e)))?;
            return Ok(());
        }
        self.ballista.try_encode(node, buf, proto_converter)
    }

    fn try_decode_udaf(&self, name: &str, buf: &[u8]) -> Result<Arc<AggregateUDF>> {
        match lifecycle_udfs::internal_aggregate(name) {
            Some(f) => Ok(f),
            None => self.ballista.try_decode_udaf(name, buf),
        }
    }

    fn try_decode_udf(&self, name: &str, buf: &[u8]) -> Result<Arc<ScalarUDF>> {
        match front_end_udf(name) {
            Some(f) => Ok(f),
            None => self.ballista.try_decode_udf(name, buf),
        }
    }
}
