//! Diagnostics through the `log` crate (the functions' fit traces, Ballista's scheduler and
//! executor, the server's warnings), written to stderr as `RUST_LOG` asks, by env_logger:
//! `RUST_LOG=lifecycle_udfs=debug` traces the fits, `RUST_LOG=debug` shows everything,
//! `RUST_LOG=warn,ballista_scheduler=info` a scheduler's job progress. The default is warnings
//! and errors. (Ballista's libraries log through `log` too, so the same directives apply to them;
//! the `tracing` events of the HTTP/2 stack below tonic are not shown.)

use std::io::Write;

/// Installs the logger once, with `default` (same syntax) when `RUST_LOG` is unset: the
/// scheduler's default shows its one line per job. Later calls do nothing.
pub fn init_with_default(default: &str) {
    let default = if default.is_empty() { "warn" } else { default };
    let _ = env_logger::Builder::from_env(env_logger::Env::default().default_filter_or(default))
        .format(|out, record| {
            writeln!(
                out,
                "[{} {}] {}",
                record.level(),
                record.target(),
                record.args()
            )
        })
        .target(env_logger::Target::Stderr)
        .try_init();
}
