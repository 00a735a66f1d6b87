//! `datafusion_lifecycle._native`: every lifecycle function as an object DataFusion Python can
//! register. Rust has no stable ABI, so nothing of this crate's DataFusion crosses into the
//! interpreter's: each object hands out a `datafusion-ffi` struct in a named PyCapsule
//! (`__datafusion_scalar_udf__`, `__datafusion_aggregate_udf__`, `__datafusion_table_function__`,
//! `__datafusion_extension_options__`), the protocol DataFusion Python's `udf`, `udaf`, `udtf` and
//! `SessionConfig.with_extension` accept.

mod guard;
mod options;
mod table_plan;

use std::ptr::NonNull;
use std::sync::Arc;

use datafusion::logical_expr::{AggregateUDF, ScalarUDF, WindowUDF};
use datafusion_ffi::udaf::FFI_AggregateUDF;
use datafusion_ffi::udf::FFI_ScalarUDF;
use datafusion_ffi::udwf::FFI_WindowUDF;
use pyo3::exceptions::{PyRuntimeError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::PyCapsule;

/// A function's documentation as text (description, syntax, arguments), for `__doc__`.
fn doc_text(doc: Option<&datafusion::logical_expr::Documentation>) -> String {
    let Some(d) = doc else {
        return String::new();
    };
    let mut out = format!("{}\n\n{}\n", d.description, d.syntax_example);
    for (name, text) in d.arguments.iter().flatten() {
        out.push_str(&format!("\n{name}: {text}"));
    }
    out
}

/// A lifecycle scalar function.
#[pyclass(name = "ScalarFunction", module = "datafusion_lifecycle", frozen)]
struct PyScalar {
    udf: Arc<ScalarUDF>,
}

#[pymethods]
impl PyScalar {
    fn __datafusion_scalar_udf__<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyCapsule>> {
        let ffi = FFI_ScalarUDF::from(Arc::clone(&self.udf));
        PyCapsule::new_with_value(py, ffi, c"datafusion_scalar_udf")
    }

    #[getter]
    fn name(&self) -> String {
        self.udf.name().to_string()
    }

    #[getter]
    fn doc(&self) -> String {
        doc_text(self.udf.documentation())
    }

    fn __repr__(&self) -> String {
        format!("<lifecycle scalar function {}>", self.udf.name())
    }
}

/// A lifecycle aggregate function.
#[pyclass(name = "AggregateFunction", module = "datafusion_lifecycle", frozen)]
struct PyAggregate {
    udaf: Arc<AggregateUDF>,
}

#[pymethods]
impl PyAggregate {
    fn __datafusion_aggregate_udf__<'py>(
        &self,
        py: Python<'py>,
    ) -> PyResult<Bound<'py, PyCapsule>> {
        let ffi = FFI_AggregateUDF::from(Arc::clone(&self.udaf));
        PyCapsule::new_with_value(py, ffi, c"datafusion_aggregate_udf")
    }

    #[getter]
    fn name(&self) -> String {
        self.udaf.name().to_string()
    }

    #[getter]
    fn doc(&self) -> String {
        doc_text(self.udaf.documentation())
    }

    fn __repr__(&self) -> String {
        format!("<lifecycle aggregate function {}>", self.udaf.name())
    }
}

/// A lifecycle window function (`datafusion.udwf` accepts it).
#[pyclass(name = "WindowFunction", module = "datafusion_lifecycle", frozen)]
struct PyWindow {
    udwf: Arc<WindowUDF>,
}

#[pymethods]
impl PyWindow {
    fn __datafusion_window_udf__<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyCapsule>> {
        let ffi = FFI_WindowUDF::from(Arc::clone(&self.udwf));
        PyCapsule::new_with_value(py, ffi, c"datafusion_window_udf")
    }

    #[getter]
    fn name(&self) -> String {
        self.udwf.name().to_string()
    }

    #[getter]
    fn doc(&self) -> String {
        doc_text(self.udwf.documentation())
    }

    fn __repr__(&self) -> String {
        format!("<lifecycle window function {}>", self.udwf.name())
    }
}

/// A lifecycle table function; it resolves the tables it names in the calling session.
#[pyclass(name = "TableFunction", module = "datafusion_lifecycle", frozen)]
struct PyTableFunction {
    name: &'static str,
    doc: &'static datafusion::logical_expr::Documentation,
}

#[pymethods]
impl PyTableFunction {
    #[getter]
    fn name(&self) -> &'static str {
        self.name
    }

    #[getter]
    fn doc(&self) -> String {
        doc_text(Some(self.doc))
    }

    fn __repr__(&self) -> String {
        format!("<lifecycle table function {}>", self.name)
    }
}

/// The `lifecycle.*` options, for `SessionConfig().with_extension(...)`.
#[pyclass(name = "LifecycleOptions", module = "datafusion_lifecycle", frozen)]
struct PyOptions;

#[pymethods]
impl PyOptions {
    #[new]
    fn new() -> Self {
        Self
    }

    fn __datafusion_extension_options__<'py>(
        &self,
        py: Python<'py>,
    ) -> PyResult<Bound<'py, PyCapsule>> {
        PyCapsule::new_with_value(py, options::new_options(), c"datafusion_extension_options")
    }
}

/// One table of the embedded sample, as an Arrow C stream (`__arrow_c_stream__`, which pyarrow
/// and DataFusion Python read): the batches cross without a copy.
#[pyclass(name = "ArrowStream", module = "datafusion_lifecycle")]
struct PyArrowStream {
    schema: datafusion::arrow::datatypes::SchemaRef,
    batches: Option<Vec<datafusion::arrow::array::RecordBatch>>,
}

#[pymethods]
impl PyArrowStream {
    #[pyo3(signature = (requested_schema = None))]
    fn __arrow_c_stream__<'py>(
        &mut self,
        py: Python<'py>,
        requested_schema: Option<Bound<'py, PyAny>>,
    ) -> PyResult<Bound<'py, PyCapsule>> {
        let _ = requested_schema;
        let batches = self
            .batches
            .take()
            .ok_or_else(|| PyRuntimeError::new_err("this sample stream was already read"))?;
        let reader = datafusion::arrow::array::RecordBatchIterator::new(
            batches.into_iter().map(Ok),
            self.schema.clone(),
        );
        let stream = arrow::ffi_stream::FFI_ArrowArrayStream::new(Box::new(reader));
        PyCapsule::new_with_value(py, stream, c"arrow_array_stream")
    }
}

/// The embedded sample (`lifecycle sql`'s): (table name, Arrow stream) for purchases, events,
/// cdnow and customers.
#[pyfunction]
fn sample_tables(py: Python<'_>) -> PyResult<Vec<(&'static str, Py<PyArrowStream>)>> {
    let tables =
        lifecycle_sample::embedded::tables().map_err(|e| PyRuntimeError::new_err(e.to_string()))?;
    tables
        .into_iter()
        .map(|(name, schema, batches)| {
            Ok((
                name,
                Py::new(
                    py,
                    PyArrowStream {
                        schema,
                        batches: Some(batches),
                    },
                )?,
            ))
        })
        .collect()
}

/// Every function: (kind, object), kind one of "scalar", "aggregate", "window", "table".
#[pyfunction]
fn functions(py: Python<'_>) -> PyResult<Vec<(&'static str, Py<PyAny>)>> {
    let mut out: Vec<(&'static str, Py<PyAny>)> = vec![];
    for udf in lifecycle_udfs::scalar_functions() {
        out.push(("scalar", Py::new(py, PyScalar { udf })?.into_any()));
    }
    for udaf in lifecycle_udfs::aggregate_functions() {
        let udaf = match udaf.name() {
            "lifecycle_stage" | "churn_flag" => guard::SessionThresholds::wrap(udaf),
            _ => udaf,
        };
        out.push(("aggregate", Py::new(py, PyAggregate { udaf })?.into_any()));
    }
    for udwf in lifecycle_udfs::window_functions() {
        out.push(("window", Py::new(py, PyWindow { udwf })?.into_any()));
    }
    for (name, _, doc) in lifecycle_udfs::table_functions() {
        out.push((
            "table",
            Py::new(py, PyTableFunction { name, doc })?.into_any(),
        ));
    }
    Ok(out)
}

/// The aggregates the table functions' plans use internally (not callable by users, but the SQL
/// of [`table_sql`] names them, so a session that runs it registers them).
#[pyfunction]
fn internal_functions(py: Python<'_>) -> PyResult<Vec<Py<PyAny>>> {
    lifecycle_udfs::table::cohort_retention::internal_aggregates()
        .into_iter()
        .map(|f| Ok(Py::new(py, PyAggregate { udaf: Arc::new(f) })?.into_any()))
        .collect()
}

/// Calls `obj.method()`, which returns a PyCapsule named `name` holding a `T`, and applies `f` to
/// the `T` while the capsule is alive.
fn with_capsule<T, R>(
    obj: &Bound<'_, PyAny>,
    method: &str,
    name: &std::ffi::CStr,
    f: impl FnOnce(&T) -> R,
) -> PyResult<R> {
    let capsule = obj.call_method0(method)?;
    let capsule = capsule.cast::<PyCapsule>()?;
    let ptr: NonNull<T> = capsule.pointer_checked(Some(name))?.cast();
    // SAFETY: the capsule's name says it holds a T, which lives as long as the capsule, and the
    // capsule outlives this call.
    Ok(f(unsafe { ptr.as_ref() }))
}

/// The SQL DataFusion Python runs for `function(table, args...)`: `args` are SQL literal texts,
/// `schema` the table's (an object with `__arrow_c_schema__`), `options` the session's
/// `lifecycle.*` settings as (name, value).
#[pyfunction]
fn table_sql(
    function: &str,
    table: &str,
    args: Vec<String>,
    schema: Bound<'_, PyAny>,
    options: Vec<(String, String)>,
) -> PyResult<String> {
    let schema = with_capsule(
        &schema,
        "__arrow_c_schema__",
        c"arrow_schema",
        |s: &arrow::ffi::FFI_ArrowSchema| datafusion::arrow::datatypes::Schema::try_from(s),
    )?
    .map_err(|e| PyValueError::new_err(e.to_string()))?;
    table_plan::table_sql(function, table, &args, Arc::new(schema), &options)
        .map_err(|e| PyValueError::new_err(e.strip_backtrace()))
}

/// The `lifecycle.*` settings of a DataFusion Python context, as (name, value), read from its
/// configuration through the FFI (no `information_schema` needed); empty when the context was
/// made without the options (it then runs with the defaults: SET lifecycle.* fails there).
#[pyfunction]
fn session_options(ctx: Bound<'_, PyAny>) -> PyResult<Vec<(String, String)>> {
    let task = with_capsule(
        &ctx,
        "__datafusion_task_context_provider__",
        c"datafusion_task_context_provider",
        |p: &datafusion_ffi::execution::FFI_TaskContextProvider| {
            Arc::<datafusion::execution::TaskContext>::try_from(p)
        },
    )?
    .map_err(|e| PyRuntimeError::new_err(e.strip_backtrace()))?;
    let config = task.session_config().options();
    let mut out = std::collections::BTreeMap::new();
    for (_, extension) in config.extensions.iter() {
        for entry in extension.entries() {
            let mut key = entry.key.as_str();
            // (Each FFI crossing prefixes the FFI namespace once more.)
            while let Some(rest) = key
                .strip_prefix(datafusion::common::config::DATAFUSION_FFI_CONFIG_NAMESPACE)
                .and_then(|k| k.strip_prefix('.'))
            {
                key = rest;
            }
            if let (true, Some(value)) = (key.starts_with("lifecycle."), entry.value) {
                out.insert(key.to_string(), value);
            }
        }
    }
    Ok(out.into_iter().collect())
}

#[pymodule]
fn _native(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<PyScalar>()?;
    m.add_class::<PyAggregate>()?;
    m.add_class::<PyWindow>()?;
    m.add_class::<PyTableFunction>()?;
    m.add_class::<PyOptions>()?;
    m.add_function(wrap_pyfunction!(functions, m)?)?;
    m.add_function(wrap_pyfunction!(sample_tables, m)?)?;
    m.add_function(wrap_pyfunction!(internal_functions, m)?)?;
    m.add_function(wrap_pyfunction!(table_sql, m)?)?;
    m.add_function(wrap_pyfunction!(session_options, m)?)?;
    Ok(())
}
