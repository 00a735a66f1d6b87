//! List-shaped partial states: their types, fields and arrays.

use std::sync::Arc;

use datafusion::arrow::datatypes::{DataType, Field, FieldRef};

/// Turns per-row counts (`offsets[row + 1]` holds row's count, `offsets[0]` is 0) into list
/// offsets, in place: the shape `convert_to_state` builds when each row is its own group.
pub fn counts_to_offsets(offsets: &mut [usize]) {
    for r in 1..offsets.len() {
        offsets[r] += offsets[r - 1];
    }
}

/// A list of `t` (elements not null), the shape of every list state.
pub fn list_of(t: DataType) -> DataType {
    DataType::List(Arc::new(Field::new_list_field(t, false)))
}

/// Partial-state fields `name[suffix]`, each a (nullable) list of the given element type.
pub fn list_state_fields(name: &str, fields: &[(&str, DataType)]) -> Vec<FieldRef> {
    fields
        .iter()
        .map(|(suffix, t)| {
            Arc::new(Field::new(
                format!("{name}[{suffix}]"),
                list_of(t.clone()),
                true,
            ))
        })
        .collect()
}

/// Builds a List array from per-group offsets and a flat values array.
pub fn list_array(
    offsets: &[usize],
    values: datafusion::arrow::array::ArrayRef,
) -> datafusion::arrow::array::ArrayRef {
    use datafusion::arrow::array::ListArray;
    use datafusion::arrow::buffer::OffsetBuffer;
    use datafusion::arrow::datatypes::Field;
    let offs = OffsetBuffer::new(offsets.iter().map(|o| *o as i32).collect::<Vec<_>>().into());
    Arc::new(ListArray::new(
        Arc::new(Field::new_list_field(values.data_type().clone(), false)),
        offs,
        values,
        None,
    ))
}
