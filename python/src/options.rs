//! The `lifecycle.*` options as DataFusion Python holds them: an `FFI_ExtensionOptions` whose
//! functions are this library's, so that `SET lifecycle.x = v` is validated exactly as in
//! `lifecycle sql` (the same [`LifecycleOptions`] setter), and so that this library knows whether
//! any live session of the process has thresholds other than the defaults.
//!
//! DataFusion Python keeps every FFI configuration extension in one `datafusion_ffi` namespace:
//! keys arrive whole (`lifecycle.churn_days`), and another library's keys may be merged into the
//! same object, so keys outside `lifecycle.` are kept as given.

use std::collections::BTreeMap;
use std::ffi::c_void;
use std::sync::atomic::{AtomicUsize, Ordering};

use datafusion::common::config::ExtensionOptions;
use datafusion_ffi::config::extension_options::FFI_ExtensionOptions;
use datafusion_ffi::util::FFI_Result;
use lifecycle_udfs::LifecycleOptions;
use stabby::str::Str as SStr;
use stabby::string::String as SString;
use stabby::vec::Vec as SVec;

const PREFIX: &str = "lifecycle.";

/// How many live option objects (sessions, their configs and the per-query copies DataFusion
/// makes) hold thresholds other than the defaults.
static NON_DEFAULT: AtomicUsize = AtomicUsize::new(0);

/// Whether some live DataFusion Python session of this process has `lifecycle.*` thresholds
/// other than the defaults.
pub fn thresholds_changed() -> bool {
    NON_DEFAULT.load(Ordering::SeqCst) > 0
}

struct Data {
    lifecycle: LifecycleOptions,
    /// Keys of other libraries' extensions sharing the FFI namespace.
    others: BTreeMap<String, String>,
    /// Whether this object is counted in [`NON_DEFAULT`].
    counted: bool,
}

impl Data {
    fn recount(&mut self) {
        let changed = self.lifecycle != LifecycleOptions::default();
        if changed && !self.counted {
            NON_DEFAULT.fetch_add(1, Ordering::SeqCst);
        } else if !changed && self.counted {
            NON_DEFAULT.fetch_sub(1, Ordering::SeqCst);
        }
        self.counted = changed;
    }
}

fn data(o: &FFI_ExtensionOptions) -> &Data {
    // SAFETY: every object with these functions was made by `wrap`, whose private data is a Data.
    unsafe { &*(o.private_data as *const Data) }
}

fn data_mut(o: &mut FFI_ExtensionOptions) -> &mut Data {
    // SAFETY: as in `data`.
    unsafe { &mut *(o.private_data as *mut Data) }
}

fn wrap(lifecycle: LifecycleOptions, others: BTreeMap<String, String>) -> FFI_ExtensionOptions {
    let mut d = Box::new(Data {
        lifecycle,
        others,
        counted: false,
    });
    d.recount();
    FFI_ExtensionOptions {
        cloned,
        set,
        entries,
        release,
        private_data: Box::into_raw(d) as *mut c_void,
    }
}

/// A new object holding the default `lifecycle.*` options.
pub fn new_options() -> FFI_ExtensionOptions {
    wrap(LifecycleOptions::default(), BTreeMap::new())
}

unsafe extern "C" fn cloned(o: &FFI_ExtensionOptions) -> FFI_ExtensionOptions {
    let d = data(o);
    wrap(d.lifecycle, d.others.clone())
}

unsafe extern "C" fn set(o: &mut FFI_ExtensionOptions, key: SStr, value: SStr) -> FFI_Result<()> {
    let d = data_mut(o);
    let (key, value) = (key.as_str(), value.as_str());
    let Some(inner) = key.strip_prefix(PREFIX) else {
        d.others.insert(key.to_string(), value.to_string());
        return FFI_Result::Ok(());
    };
    match d.lifecycle.set(inner, value) {
        Ok(()) => {
            d.recount();
            FFI_Result::Ok(())
        }
        Err(e) => FFI_Result::Err(SString::from(e.strip_backtrace().as_str())),
    }
}

unsafe extern "C" fn entries(o: &FFI_ExtensionOptions) -> SVec<(SString, SString)> {
    let d = data(o);
    // `LifecycleOptions::entries` names its keys in full (`lifecycle.churn_days`), as SHOW does.
    d.lifecycle
        .entries()
        .into_iter()
        .filter_map(|e| Some((e.key, e.value?)))
        .chain(d.others.iter().map(|(k, v)| (k.clone(), v.clone())))
        .map(|(k, v)| (SString::from(k.as_str()), SString::from(v.as_str())))
        .collect()
}

unsafe extern "C" fn release(o: &mut FFI_ExtensionOptions) {
    if o.private_data.is_null() {
        return;
    }
    // SAFETY: made by `wrap` with Box::into_raw; released once (the pointer is cleared).
    let mut d = unsafe { Box::from_raw(o.private_data as *mut Data) };
    d.lifecycle = LifecycleOptions::default();
    d.recount();
    o.private_data = std::ptr::null_mut();
}
