//! Prepared-statement handles: self-contained (they carry the SQL, and the bound parameters as
//! Arrow IPC), so a client may redeem them on any connection, at any time.

use datafusion::arrow::array::RecordBatch;
use datafusion::arrow::ipc::writer::StreamWriter;
use datafusion::common::{ParamValues, ScalarValue};
use tonic::Status;

const HANDLE_MAGIC: &[u8; 4] = b"LCP1";

/// A prepared statement handle: magic, SQL length, SQL, then the bound parameters as an Arrow
/// IPC stream (absent until parameters are bound).
pub fn encode_handle(sql: &str, params: Option<&RecordBatch>) -> Result<Vec<u8>, Status> {
    let mut out = Vec::with_capacity(8 + sql.len());
    out.extend_from_slice(HANDLE_MAGIC);
    out.extend_from_slice(&(sql.len() as u32).to_le_bytes());
    out.extend_from_slice(sql.as_bytes());
    if let Some(batch) = params {
        let mut w = StreamWriter::try_new(&mut out, &batch.schema())
            .map_err(|e| Status::internal(e.to_string()))?;
        w.write(batch)
            .map_err(|e| Status::internal(e.to_string()))?;
        w.finish().map_err(|e| Status::internal(e.to_string()))?;
    }
    Ok(out)
}

pub fn decode_handle(handle: &[u8]) -> Result<(String, Option<RecordBatch>), Status> {
    let bad = || Status::invalid_argument("invalid prepared statement handle");
    if handle.len() < 8 || &handle[..4] != HANDLE_MAGIC {
        return Err(bad());
    }
    let len = u32::from_le_bytes(handle[4..8].try_into().map_err(|_| bad())?) as usize;
    let sql = handle.get(8..8 + len).ok_or_else(bad)?;
    let sql = std::str::from_utf8(sql).map_err(|_| bad())?.to_string();
    let rest = &handle[8 + len..];
    let params = if rest.is_empty() {
        None
    } else {
        let mut r =
            datafusion::arrow::ipc::reader::StreamReader::try_new(rest, None).map_err(|_| bad())?;
        r.next().transpose().map_err(|_| bad())?
    };
    Ok((sql, params))
}

/// The first row of a parameter batch as positional parameter values (`$1`, `$2`, ...).
pub(super) fn param_values(batch: &RecordBatch) -> Result<ParamValues, Status> {
    if batch.num_rows() != 1 {
        return Err(Status::invalid_argument(format!(
            "bind exactly one row of parameters, got {}",
            batch.num_rows()
        )));
    }
    let values = batch
        .columns()
        .iter()
        .map(|c| ScalarValue::try_from_array(c, 0))
        .collect::<datafusion::error::Result<Vec<_>>>()
        .map_err(super::status)?;
    Ok(ParamValues::List(
        values.into_iter().map(Into::into).collect(),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::arrow::array::{Int64Array, StringArray};
    use std::sync::Arc;

    #[test]
    fn handles_round_trip() {
        let h = encode_handle("SELECT $1", None).unwrap();
        assert_eq!(decode_handle(&h).unwrap(), ("SELECT $1".to_string(), None));
        let batch = RecordBatch::try_from_iter(vec![
            ("a", Arc::new(Int64Array::from(vec![7])) as _),
            ("b", Arc::new(StringArray::from(vec!["x"])) as _),
        ])
        .unwrap();
        let h = encode_handle("SELECT $1, $2", Some(&batch)).unwrap();
        let (sql, params) = decode_handle(&h).unwrap();
        assert_eq!(sql, "SELECT $1, $2");
        assert_eq!(params.unwrap(), batch);
        assert!(decode_handle(b"garbage").is_err());
    }
}
