//! `lifecycle generate`: synthetic purchase history from a buy-till-you-die process.
//!
//! Every customer is simulated from its own random stream (seeded by the run's seed and the
//! customer id), so the output is deterministic for a seed whatever the chunking, and customers
//! are produced in chunks that are written out and dropped: memory stays bounded at any size.
//!
//! The process (BG/NBD with Gamma-Gamma spend):
//! - customers sign up uniformly over `[start, end)`; 75% make a first purchase, after an
//!   exponential delay (mean 5 days); the rest stay prospects;
//! - each buyer has its own Poisson purchase rate `lambda ~ Gamma(r, 1/alpha)` (per day) and
//!   dropout probability `p ~ Beta(a, b)`: after every repeat purchase (not the first, which
//!   starts the observation) it drops out with probability `p`, exactly the BG/NBD process;
//! - spend per order `~ Gamma(shape p_spend, scale 1/nu)`, with `nu ~ Gamma(q, 1/gamma)` per customer.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use datafusion::arrow::array::{
    ArrayRef, Float64Array, Int64Array, RecordBatch, StringArray, TimestampMicrosecondArray,
};
use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit};
use datafusion::error::{DataFusionError, Result};
use parquet::arrow::ArrowWriter;
use parquet::basic::{Compression, ZstdLevel};
use parquet::file::properties::WriterProperties;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rand_distr::{Beta, Distribution, Exp, Gamma};

const MICROS_PER_DAY: f64 = 86_400_000_000.0;

/// Parameters of the simulated population.
#[derive(Debug, Clone, Copy)]
pub struct Process {
    /// Gamma shape and rate of purchase rates (per day).
    pub r: f64,
    pub alpha: f64,
    /// Beta parameters of the dropout probability.
    pub a: f64,
    pub b: f64,
    /// Share of signed-up customers who ever buy.
    pub buyer_share: f64,
    /// Gamma-Gamma spend: shape per order, and the shape and rate of the per-customer rate.
    pub p_spend: f64,
    pub q_spend: f64,
    pub gamma_spend: f64,
}

impl Default for Process {
    fn default() -> Self {
        Self {
            r: 1.2,
            alpha: 22.0,
            a: 1.0,
            b: 16.0,
            buyer_share: 0.75,
            p_spend: 6.0,
            q_spend: 4.0,
            gamma_spend: 20.0,
        }
    }
}

/// What to generate.
#[derive(Debug, Clone)]
pub struct GenerateOptions {
    pub customers: u64,
    pub seed: u64,
    /// Range of signups and purchases, in microseconds since the epoch (end exclusive).
    pub start_us: i64,
    pub end_us: i64,
    pub process: Process,
}

pub const CHANNELS: [&str; 5] = ["organic", "paid_search", "social", "referral", "email"];
pub const COUNTRIES: [&str; 8] = ["US", "GB", "DE", "FR", "NL", "ES", "CA", "AU"];

pub fn purchases_schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("customer_id", DataType::Int64, false),
        Field::new("order_id", DataType::Int64, false),
        Field::new(
            "order_ts",
            DataType::Timestamp(TimeUnit::Microsecond, None),
            false,
        ),
        Field::new("amount", DataType::Float64, false),
    ]))
}

pub fn customers_schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("customer_id", DataType::Int64, false),
        Field::new(
            "signup_ts",
            DataType::Timestamp(TimeUnit::Microsecond, None),
            false,
        ),
        Field::new("channel", DataType::Utf8, false),
        Field::new("country", DataType::Utf8, false),
    ]))
}

/// One chunk of customers and their purchases, column by column.
#[derive(Default)]
struct Chunk {
    c_id: Vec<i64>,
    c_signup: Vec<i64>,
    c_channel: Vec<&'static str>,
    c_country: Vec<&'static str>,
    p_customer: Vec<i64>,
    p_order: Vec<i64>,
    p_ts: Vec<i64>,
    p_amount: Vec<f64>,
}

impl Chunk {
    fn batches(self) -> Result<(RecordBatch, RecordBatch)> {
        let customers = RecordBatch::try_new(
            customers_schema(),
            vec![
                Arc::new(Int64Array::from(self.c_id)) as ArrayRef,
                Arc::new(TimestampMicrosecondArray::from(self.c_signup)),
                Arc::new(StringArray::from(self.c_channel)),
                Arc::new(StringArray::from(self.c_country)),
            ],
        )?;
        let purchases = RecordBatch::try_new(
            purchases_schema(),
            vec![
                Arc::new(Int64Array::from(self.p_customer)) as ArrayRef,
                Arc::new(Int64Array::from(self.p_order)),
                Arc::new(TimestampMicrosecondArray::from(self.p_ts)),
                Arc::new(Float64Array::from(self.p_amount)),
            ],
        )?;
        Ok((customers, purchases))
    }
}

/// The simulator: distributions built once, one random stream per customer.
pub struct Simulator {
    opts: GenerateOptions,
    rate: Gamma<f64>,
    dropout: Beta<f64>,
    spend_rate: Gamma<f64>,
    first_delay: Exp<f64>,
}

impl Simulator {
    pub fn new(opts: GenerateOptions) -> Result<Self> {
        let p = opts.process;
        let bad = |e: String| DataFusionError::Configuration(format!("generator parameters: {e}"));
        if opts.end_us <= opts.start_us {
            return Err(bad("--end must be after --start".into()));
        }
        Ok(Self {
            rate: Gamma::new(p.r, 1.0 / p.alpha).map_err(|e| bad(e.to_string()))?,
            dropout: Beta::new(p.a, p.b).map_err(|e| bad(e.to_string()))?,
            spend_rate: Gamma::new(p.q_spend, 1.0 / p.gamma_spend)
                .map_err(|e| bad(e.to_string()))?,
            first_delay: Exp::new(1.0 / 5.0).map_err(|e| bad(e.to_string()))?,
            opts,
        })
    }

    /// Simulates customers `ids` (1-based) into a chunk.
    fn chunk(&self, ids: std::ops::Range<u64>) -> Chunk {
        let mut c = Chunk::default();
        let (start, end) = (self.opts.start_us, self.opts.end_us);
        let span = (end - start) as f64;
        for id in ids {
            let mut rng =
                ChaCha8Rng::seed_from_u64(self.opts.seed ^ id.wrapping_mul(0x9E37_79B9_7F4A_7C15));
            let signup = start + (rng.random::<f64>() * span) as i64;
            let cid = id as i64;
            c.c_id.push(cid);
            c.c_signup.push(signup);
            c.c_channel
                .push(CHANNELS[rng.random_range(0..CHANNELS.len())]);
            c.c_country
                .push(COUNTRIES[rng.random_range(0..COUNTRIES.len())]);
            if rng.random::<f64>() >= self.opts.process.buyer_share {
                continue;
            }
            let lambda = self.rate.sample(&mut rng).max(1e-6);
            let p = self.dropout.sample(&mut rng);
            let nu = self.spend_rate.sample(&mut rng).max(1e-9);
            let spend = Gamma::new(self.opts.process.p_spend, 1.0 / nu).expect("valid gamma");
            let between = Exp::new(lambda).expect("positive rate");
            let mut t = signup as f64 + self.first_delay.sample(&mut rng) * MICROS_PER_DAY;
            let mut k = 0i64;
            while t < end as f64 {
                c.p_customer.push(cid);
                c.p_order.push(cid * 100_000 + k);
                c.p_ts.push(t as i64);
                c.p_amount
                    .push((spend.sample(&mut rng) * 100.0).round() / 100.0);
                k += 1;
                // BG/NBD: the customer may drop out after each repeat purchase (not after the
                // first one, which starts the observation).
                if (k >= 2 && rng.random::<f64>() < p) || k >= 99_999 {
                    break;
                }
                t += between.sample(&mut rng) * MICROS_PER_DAY;
            }
        }
        c
    }

    /// Simulates customers in chunks, calling `sink(customers, purchases)` for each.
    pub fn run(
        &self,
        chunk_size: u64,
        mut sink: impl FnMut(u64, RecordBatch, RecordBatch) -> Result<()>,
    ) -> Result<()> {
        let n = self.opts.customers;
        let mut lo = 1;
        while lo <= n {
            let hi = (lo + chunk_size).min(n + 1);
            let (customers, purchases) = self.chunk(lo..hi).batches()?;
            sink(hi - lo, customers, purchases)?;
            lo = hi;
        }
        Ok(())
    }
}

/// Batches of a whole (small) generated dataset, for the embedded sample and tests.
pub fn generate_batches(
    opts: GenerateOptions,
    chunk: u64,
) -> Result<(Vec<RecordBatch>, Vec<RecordBatch>)> {
    let sim = Simulator::new(opts)?;
    let (mut cs, mut ps) = (vec![], vec![]);
    sim.run(chunk, |_, c, p| {
        cs.push(c);
        ps.push(p);
        Ok(())
    })?;
    Ok((cs, ps))
}

/// Writes `DIR/purchases/part-K.parquet` and `DIR/customers/part-K.parquet`, customers split
/// into `files` contiguous ranges. `progress(customers_done)` is called after each chunk.
pub fn write_parquet(
    opts: GenerateOptions,
    out: &Path,
    files: u64,
    mut progress: impl FnMut(u64),
) -> Result<(u64, u64)> {
    let files = files.max(1);
    let sim = Simulator::new(opts.clone())?;
    let props = WriterProperties::builder()
        .set_compression(Compression::ZSTD(ZstdLevel::try_new(1)?))
        .set_max_row_group_row_count(Some(1 << 20))
        .build();
    let dir = |name: &str| -> Result<PathBuf> {
        let d = out.join(name);
        std::fs::create_dir_all(&d)?;
        Ok(d)
    };
    let (pdir, cdir) = (dir("purchases")?, dir("customers")?);
    let per_file = opts.customers.div_ceil(files).max(1);
    let chunk = per_file.clamp(1, 100_000);
    let (mut n_customers, mut n_purchases) = (0u64, 0u64);
    let mut file_no = 0u64;
    let mut done_in_file = 0u64;
    let open = |d: &Path, k: u64, schema: SchemaRef| -> Result<ArrowWriter<File>> {
        let f = File::create(d.join(format!("part-{k:05}.parquet")))?;
        Ok(ArrowWriter::try_new(f, schema, Some(props.clone()))?)
    };
    let mut cw = open(&cdir, 0, customers_schema())?;
    let mut pw = open(&pdir, 0, purchases_schema())?;
    // Chunks never straddle files: the simulator runs file by file.
    while n_customers < opts.customers {
        let lo = n_customers + 1;
        let hi = (lo + chunk.min(per_file - done_in_file)).min(opts.customers + 1);
        let (c, p) = sim.chunk(lo..hi).batches()?;
        n_purchases += p.num_rows() as u64;
        cw.write(&c)?;
        pw.write(&p)?;
        n_customers += hi - lo;
        done_in_file += hi - lo;
        progress(n_customers);
        if done_in_file == per_file && n_customers < opts.customers {
            cw.close()?;
            pw.close()?;
            file_no += 1;
            done_in_file = 0;
            cw = open(&cdir, file_no, customers_schema())?;
            pw = open(&pdir, file_no, purchases_schema())?;
        }
    }
    cw.close()?;
    pw.close()?;
    Ok((n_customers, n_purchases))
}

/// Parses `YYYY-MM-DD` or an RFC 3339 timestamp into microseconds since the epoch (UTC).
pub fn parse_date_us(s: &str) -> std::result::Result<i64, String> {
    if let Ok(d) = chrono::NaiveDate::parse_from_str(s, "%Y-%m-%d") {
        return Ok(d.and_hms_opt(0, 0, 0).unwrap().and_utc().timestamp_micros());
    }
    if let Ok(t) = chrono::DateTime::parse_from_rfc3339(s) {
        return Ok(t.timestamp_micros());
    }
    if let Ok(t) = chrono::NaiveDateTime::parse_from_str(s, "%Y-%m-%d %H:%M:%S") {
        return Ok(t.and_utc().timestamp_micros());
    }
    Err(format!("invalid date '{s}': expected YYYY-MM-DD"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn opts(n: u64) -> GenerateOptions {
        GenerateOptions {
            customers: n,
            seed: 7,
            start_us: parse_date_us("2022-01-01").unwrap(),
            end_us: parse_date_us("2025-01-01").unwrap(),
            process: Process::default(),
        }
    }

    #[test]
    fn deterministic_whatever_the_chunking() {
        let (c1, p1) = generate_batches(opts(500), 37).unwrap();
        let (c2, p2) = generate_batches(opts(500), 500).unwrap();
        let cat = |b: &[RecordBatch]| {
            datafusion::arrow::compute::concat_batches(&b[0].schema(), b).unwrap()
        };
        assert_eq!(cat(&c1), cat(&c2));
        assert_eq!(cat(&p1), cat(&p2));
    }

    #[test]
    fn purchases_within_range_and_after_signup() {
        let o = opts(300);
        let (_, ps) = generate_batches(o.clone(), 100).unwrap();
        for b in ps {
            let ts = b
                .column(2)
                .as_any()
                .downcast_ref::<TimestampMicrosecondArray>()
                .unwrap();
            for t in ts.values() {
                assert!(*t >= o.start_us && *t < o.end_us);
            }
        }
    }
}
