//! Result printing: `table` (aligned text), `csv`, `json` (one array of objects) and `ndjson`.
//! CSV, JSON and NDJSON stream batch by batch; `table` (aligned) shows at most a row cap.
//! In `table` and `csv`, a nested value (STRUCT, LIST, MAP) is written as JSON text in its cell,
//! as DuckDB does; `json` and `ndjson` nest it natively.

use std::io::Write;

use std::sync::Arc;

use datafusion::arrow::array::{ArrayRef, RecordBatch, StringBuilder};
use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use datafusion::arrow::util::pretty::pretty_format_batches;
use datafusion::error::{DataFusionError, Result};
use datafusion::physical_plan::SendableRecordBatchStream;
use futures::StreamExt;

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    Table,
    Csv,
    Json,
    Ndjson,
}

fn is_nested(t: &DataType) -> bool {
    t.is_nested() || matches!(t, DataType::Map(_, _))
}

/// The schema with nested columns as text (see [`nested_as_json`]).
pub fn json_text_schema(schema: &SchemaRef) -> SchemaRef {
    if !schema.fields().iter().any(|f| is_nested(f.data_type())) {
        return schema.clone();
    }
    let fields: Vec<Field> = schema
        .fields()
        .iter()
        .map(|f| {
            if is_nested(f.data_type()) {
                Field::new(f.name(), DataType::Utf8, true)
            } else {
                f.as_ref().clone()
            }
        })
        .collect();
    Arc::new(Schema::new_with_metadata(fields, schema.metadata().clone()))
}

/// The batch with every nested column (STRUCT, LIST, MAP) as JSON text, one value per cell
/// (NULL stays NULL), for the formats that have no nesting (CSV, the text table).
pub fn nested_as_json(batch: &RecordBatch) -> Result<RecordBatch> {
    use datafusion::arrow::json::writer::{EncoderOptions, make_encoder};
    let schema = batch.schema();
    if !schema.fields().iter().any(|f| is_nested(f.data_type())) {
        return Ok(batch.clone());
    }
    let options = EncoderOptions::default().with_explicit_nulls(true);
    let mut columns: Vec<ArrayRef> = Vec::with_capacity(batch.num_columns());
    for (field, column) in schema.fields().iter().zip(batch.columns()) {
        if !is_nested(field.data_type()) {
            columns.push(column.clone());
            continue;
        }
        let mut encoder = make_encoder(field, column.as_ref(), &options)?;
        let mut text = StringBuilder::with_capacity(column.len(), column.len() * 16);
        let mut buf = Vec::new();
        for i in 0..column.len() {
            if encoder.is_null(i) {
                text.append_null();
            } else {
                buf.clear();
                encoder.encode(i, &mut buf);
                text.append_value(String::from_utf8_lossy(&buf));
            }
        }
        columns.push(Arc::new(text.finish()));
    }
    Ok(RecordBatch::try_new(json_text_schema(&schema), columns)?)
}

/// How many rows the aligned `table` format shows by default: the table needs every shown row
/// before it can print (column widths), so a huge result is cut here rather than buffered whole.
pub const DEFAULT_MAX_ROWS: usize = 10_000;

/// Writes a stream of batches in `format`; returns the number of rows. CSV, JSON and NDJSON
/// stream batch by batch; `table` keeps at most `max_rows` rows (`None`: all) and says how many
/// more the result had.
pub async fn write_stream(
    mut stream: SendableRecordBatchStream,
    format: Format,
    max_rows: Option<usize>,
    out: &mut dyn Write,
) -> Result<usize> {
    let schema = stream.schema();
    let mut rows = 0;
    match format {
        Format::Table => {
            let cap = max_rows.unwrap_or(usize::MAX);
            let mut shown = vec![];
            let mut kept = 0usize;
            while let Some(b) = stream.next().await {
                let b = b?;
                rows += b.num_rows();
                if kept < cap {
                    let take = b.num_rows().min(cap - kept);
                    kept += take;
                    shown.push(b.slice(0, take));
                }
            }
            write_batches(&schema, &shown, format, out)?;
            if rows > kept {
                writeln!(
                    out,
                    "({} of {rows} rows shown; --max-rows or \\maxrows shows more, --format csv all)",
                    kept
                )?;
            }
        }
        Format::Json => {
            let mut w = datafusion::arrow::json::ArrayWriter::new(&mut *out);
            while let Some(b) = stream.next().await {
                let b = b?;
                rows += b.num_rows();
                w.write(&b)?;
            }
            w.finish()?;
            drop(w);
            writeln!(out)?;
        }
        Format::Csv => {
            let mut w = datafusion::arrow::csv::WriterBuilder::new()
                .with_header(true)
                .build(&mut *out);
            let mut any = false;
            while let Some(b) = stream.next().await {
                let b = b?;
                rows += b.num_rows();
                w.write(&nested_as_json(&b)?)?;
                any = true;
            }
            if !any {
                w.write(&RecordBatch::new_empty(json_text_schema(&schema)))?;
            }
        }
        Format::Ndjson => {
            let mut w = datafusion::arrow::json::LineDelimitedWriter::new(&mut *out);
            while let Some(b) = stream.next().await {
                let b = b?;
                rows += b.num_rows();
                w.write(&b)?;
            }
            w.finish()?;
        }
    }
    out.flush().map_err(DataFusionError::from)?;
    Ok(rows)
}

/// Writes collected batches in `format`.
pub fn write_batches(
    schema: &SchemaRef,
    batches: &[RecordBatch],
    format: Format,
    out: &mut dyn Write,
) -> Result<()> {
    match format {
        Format::Table => {
            if batches.iter().all(|b| b.num_rows() == 0) {
                let empty = RecordBatch::new_empty(json_text_schema(schema));
                writeln!(out, "{}", pretty_format_batches(&[empty])?)?;
            } else {
                let text = batches
                    .iter()
                    .map(nested_as_json)
                    .collect::<Result<Vec<_>>>()?;
                writeln!(out, "{}", pretty_format_batches(&text)?)?;
            }
        }
        Format::Csv => {
            let mut w = datafusion::arrow::csv::WriterBuilder::new()
                .with_header(true)
                .build(&mut *out);
            if batches.is_empty() {
                w.write(&RecordBatch::new_empty(json_text_schema(schema)))?;
            }
            for b in batches {
                w.write(&nested_as_json(b)?)?;
            }
        }
        Format::Json => {
            let mut w = datafusion::arrow::json::ArrayWriter::new(&mut *out);
            for b in batches {
                w.write(b)?;
            }
            w.finish()?;
            drop(w);
            writeln!(out)?;
        }
        Format::Ndjson => {
            let mut w = datafusion::arrow::json::LineDelimitedWriter::new(&mut *out);
            for b in batches {
                w.write(b)?;
            }
            w.finish()?;
        }
    }
    Ok(())
}
