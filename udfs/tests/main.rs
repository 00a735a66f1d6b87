//! The functions' SQL tests, with no binary: every `udfs/tests/slt/*.slt` file (hand-computed
//! cases on inline data) against a plain DataFusion session with the lifecycle functions
//! registered, at `target_partitions` 1 and 4 (4 exercises partial aggregation and the merge path).
//! `cargo test -p lifecycle-udfs` runs them; the binary's tests add the sample-based ones.

use datafusion::prelude::{SessionConfig, SessionContext};

async fn session(partitions: usize) -> SessionContext {
    let ctx =
        SessionContext::new_with_config(SessionConfig::new().with_target_partitions(partitions));
    lifecycle_udfs::register_all(&ctx).expect("register");
    ctx
}

fn dir() -> std::path::PathBuf {
    std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/slt")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slt_one_partition() {
    lifecycle_testkit::run_slt(&dir(), 1, session).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slt_four_partitions() {
    lifecycle_testkit::run_slt(&dir(), 4, session).await;
}
