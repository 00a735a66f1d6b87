//! `lifecycle docs`: the function reference (docs/functions.md), from the functions' own
//! documentation.

use datafusion::error::Result;

pub fn run() -> Result<()> {
    print!("{}", lifecycle_udfs::function_docs());
    Ok(())
}
