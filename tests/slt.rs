//! Runs every `tests/slt/*.slt` file (the cases that need the binary's session: the embedded
//! sample, its views) with `target_partitions` 1 and 4, through the runner the functions' crate
//! uses for its own `udfs/tests/slt/`.

use crate::common::session;
use lifecycle_testkit::run_slt;

fn dir() -> std::path::PathBuf {
    std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/slt")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slt_one_partition() {
    run_slt(&dir(), 1, |p| session(p, &[])).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slt_four_partitions() {
    run_slt(&dir(), 4, |p| session(p, &[])).await;
}
