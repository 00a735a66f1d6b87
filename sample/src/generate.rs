//! `lifecycle generate`: synthetic purchase history from a buy-till-you-die process.
//!
//! Every customer is simulated from its own random stream (seeded by the run's seed and the
//! customer id), so the output is deterministic for a seed whatever the chunking, and customers
//! are produced in chunks that are written out and dropped: memory stays bounded at any size.
//!
//! The process (BG/NBD with Gamma-Gamma spend):
//! - customers sign up uniformly over `[start, end)`; a share of them make a first purchase,
//!   after an exponential delay (mean 5 days); the rest stay prospects;
//! - each buyer has its own Poisson purchase rate `lambda ~ Gamma(r, 1/alpha)` (per day) and
//!   dropout probability `p ~ Beta(a, b)`: after every repeat purchase (not the first, which
//!   starts the observation) it drops out with probability `p`, exactly the BG/NBD process;
//! - spend per order `~ Gamma(shape p_spend, scale 1/nu)`, with `nu ~ Gamma(q, 1/gamma)` per customer.
//!
//! Two shapes ([`Shape`]):
//! - `retail` (the default): the parameters of the published CDNOW fits (BG/NBD: Fader, Hardie and
//!   Lee 2005, r 0.243, alpha 4.414 per week, a 0.793, b 2.426; Gamma-Gamma: Fader and Hardie 2013,
//!   p 6.25, q 3.74, gamma 15.44). Over three years about 55% of buyers never buy again and a buyer
//!   makes about 3.5 purchases; on the site most visits only browse: besides the signed-up customers
//!   (half of whom buy), 15 anonymous visitors per customer (ids above the customers') browse a
//!   session or two, and buyers browse several sessions per purchase, so about 3% of visitors and
//!   of sessions purchase.
//! - `dense`: the earlier defaults, heavy repeat buyers (about 5% one-time buyers, 15 purchases per
//!   buyer, 75% of customers buying, no anonymous visitors): large per-customer groups.
use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use datafusion::arrow::array::{
    ArrayRef, Decimal128Array, Float64Array, Int64Array, RecordBatch, StringArray,
    TimestampMicrosecondArray,
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
    /// Site events: mean browsing-only sessions of a buyer before its first purchase, per
    /// purchase after it, and of a prospect over its life.
    pub browse_before_first: f64,
    pub browse_per_order: f64,
    pub browse_prospect: f64,
    /// Anonymous visitors per customer: they never sign up or buy, and browse
    /// `browse_anonymous` sessions on average (at least one).
    pub anonymous_visitors: u64,
    pub browse_anonymous: f64,
}

/// A named set of [`Process`] parameters (`lifecycle generate --shape`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Shape {
    /// Real retail purchase history: the CDNOW fits, mostly one-time buyers, a few percent of
    /// visitors converting.
    #[default]
    Retail,
    /// Heavy repeat buyers (about 15 purchases each): large per-customer groups.
    Dense,
}

impl Shape {
    /// The names `--shape` accepts, in the order of the variants.
    pub const NAMES: [&'static str; 2] = ["retail", "dense"];
}

impl std::str::FromStr for Shape {
    type Err = String;
    fn from_str(s: &str) -> std::result::Result<Self, String> {
        match s.to_ascii_lowercase().as_str() {
            "retail" => Ok(Shape::Retail),
            "dense" => Ok(Shape::Dense),
            _ => Err(format!("unknown shape '{s}' (retail or dense)")),
        }
    }
}

impl Process {
    pub fn of(shape: Shape) -> Self {
        match shape {
            Shape::Retail => Self::retail(),
            Shape::Dense => Self::dense(),
        }
    }

    /// The CDNOW fits (see the module docs); rates per day (alpha 4.414 per week x 7).
    pub fn retail() -> Self {
        Self {
            r: 0.243,
            alpha: 4.414 * 7.0,
            a: 0.793,
            b: 2.426,
            buyer_share: 0.5,
            p_spend: 6.25,
            q_spend: 3.74,
            gamma_spend: 15.44,
            browse_before_first: 4.0,
            browse_per_order: 4.0,
            browse_prospect: 2.0,
            anonymous_visitors: 15,
            browse_anonymous: 1.3,
        }
    }

    /// Heavy repeat buyers: the generator's original defaults.
    pub fn dense() -> Self {
        Self {
            r: 1.2,
            alpha: 22.0,
            a: 1.0,
            b: 16.0,
            buyer_share: 0.75,
            p_spend: 6.0,
            q_spend: 4.0,
            gamma_spend: 20.0,
            browse_before_first: 2.0,
            browse_per_order: 1.5,
            browse_prospect: 3.0,
            anonymous_visitors: 0,
            browse_anonymous: 0.0,
        }
    }
}

impl Default for Process {
    fn default() -> Self {
        Self::retail()
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
    /// Also simulate the site events (the `events` table).
    pub events: bool,
    /// The type of `purchases.amount`.
    pub amount: AmountType,
}

/// The type `purchases.amount` is written as (`lifecycle generate --amount-type`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum AmountType {
    /// `DECIMAL(12, 2)`, as money is kept in real order tables: sums are exact.
    #[default]
    Decimal,
    /// `DOUBLE`, as files written before the generator wrote DECIMAL.
    Double,
}

impl AmountType {
    /// The names `--amount-type` accepts, in the order of the variants.
    pub const NAMES: [&'static str; 2] = ["decimal", "double"];

    /// The Arrow type of the column.
    pub fn data_type(self) -> DataType {
        match self {
            AmountType::Decimal => DataType::Decimal128(AMOUNT_PRECISION, AMOUNT_SCALE),
            AmountType::Double => DataType::Float64,
        }
    }

    /// The column from amounts in cents.
    fn array(self, cents: Vec<i64>) -> Result<ArrayRef> {
        Ok(match self {
            AmountType::Decimal => Arc::new(
                Decimal128Array::from_iter_values(cents.into_iter().map(i128::from))
                    .with_precision_and_scale(AMOUNT_PRECISION, AMOUNT_SCALE)?,
            ),
            AmountType::Double => Arc::new(Float64Array::from_iter_values(
                cents.into_iter().map(|c| c as f64 / 100.0),
            )),
        })
    }
}

impl std::str::FromStr for AmountType {
    type Err = String;
    fn from_str(s: &str) -> std::result::Result<Self, String> {
        match s.to_ascii_lowercase().as_str() {
            "decimal" => Ok(AmountType::Decimal),
            "double" => Ok(AmountType::Double),
            _ => Err(format!("unknown amount type '{s}' (decimal or double)")),
        }
    }
}

/// `amount DECIMAL(12, 2)`: up to 9,999,999,999.99.
pub const AMOUNT_PRECISION: u8 = 12;
pub const AMOUNT_SCALE: i8 = 2;
/// The largest amount in cents a `DECIMAL(12, 2)` holds (a draw beyond it is capped there).
const MAX_CENTS: i64 = 999_999_999_999;

pub const CHANNELS: [&str; 5] = ["organic", "paid_search", "social", "referral", "email"];
pub const COUNTRIES: [&str; 8] = ["US", "GB", "DE", "FR", "NL", "ES", "CA", "AU"];

/// The purchases table's schema, with `amount` of the given type.
pub fn purchases_schema(amount: AmountType) -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("customer_id", DataType::Int64, false),
        Field::new("order_id", DataType::Int64, false),
        Field::new(
            "order_ts",
            DataType::Timestamp(TimeUnit::Microsecond, None),
            false,
        ),
        Field::new("amount", amount.data_type(), false),
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

pub const EVENT_TYPES: [&str; 5] = ["visit", "view", "cart", "checkout", "purchase"];

pub fn events_schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("customer_id", DataType::Int64, false),
        Field::new("session_id", DataType::Int64, false),
        Field::new(
            "event_ts",
            DataType::Timestamp(TimeUnit::Microsecond, None),
            false,
        ),
        Field::new("event_type", DataType::Utf8, false),
    ]))
}

/// Generated tables, batch by batch.
#[derive(Debug, Default)]
pub struct Tables {
    pub customers: Vec<RecordBatch>,
    pub purchases: Vec<RecordBatch>,
    pub events: Vec<RecordBatch>,
}

/// One chunk's batches.
struct Batches {
    customers: RecordBatch,
    purchases: RecordBatch,
    events: RecordBatch,
}

/// One chunk of customers, their purchases and their site events, column by column.
#[derive(Default)]
struct Chunk {
    e_customer: Vec<i64>,
    e_session: Vec<i64>,
    e_ts: Vec<i64>,
    e_type: Vec<&'static str>,
    c_id: Vec<i64>,
    c_signup: Vec<i64>,
    c_channel: Vec<&'static str>,
    c_country: Vec<&'static str>,
    p_customer: Vec<i64>,
    p_order: Vec<i64>,
    p_ts: Vec<i64>,
    /// Amounts in cents.
    p_amount: Vec<i64>,
}

impl Chunk {
    fn batches(self, amount: AmountType) -> Result<Batches> {
        let events = RecordBatch::try_new(
            events_schema(),
            vec![
                Arc::new(Int64Array::from(self.e_customer)) as ArrayRef,
                Arc::new(Int64Array::from(self.e_session)),
                Arc::new(TimestampMicrosecondArray::from(self.e_ts)),
                Arc::new(StringArray::from(self.e_type)),
            ],
        )?;
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
            purchases_schema(amount),
            vec![
                Arc::new(Int64Array::from(self.p_customer)) as ArrayRef,
                Arc::new(Int64Array::from(self.p_order)),
                Arc::new(TimestampMicrosecondArray::from(self.p_ts)),
                amount.array(self.p_amount)?,
            ],
        )?;
        Ok(Batches {
            customers,
            purchases,
            events,
        })
    }

    /// One session of `kinds` (indices into EVENT_TYPES) starting at `start`, one to a few
    /// minutes apart, clipped to `end`; a purchase session ends exactly at the order's instant.
    fn session(&mut self, cid: i64, session: i64, times: &[(i64, usize)]) {
        for &(t, k) in times {
            self.e_customer.push(cid);
            self.e_session.push(session);
            self.e_ts.push(t);
            self.e_type.push(EVENT_TYPES[k]);
        }
    }
}

const MICROS_PER_MINUTE: f64 = 60_000_000.0;

/// Site events of one customer, from its own random stream: before each purchase a session
/// visit -> view(s) -> cart -> checkout -> purchase ending at the order's instant; besides, browsing
/// sessions that stop at visit, view, cart or checkout (about 2 before a first purchase, 1.5 per
/// purchase after it, 3 for a prospect over its life), uniformly over the customer's time.
fn simulate_events(
    c: &mut Chunk,
    rng: &mut ChaCha8Rng,
    p: &Process,
    cid: i64,
    signup: i64,
    end: i64,
    orders: &[i64],
) {
    let mut session = cid * 1_000_000;
    let minutes = |rng: &mut ChaCha8Rng, lo: f64, hi: f64| {
        (rng.random_range(lo..hi) * MICROS_PER_MINUTE) as i64
    };
    for &t in orders {
        session += 1;
        let checkout = t - minutes(rng, 0.5, 3.0);
        let cart = checkout - minutes(rng, 1.0, 10.0);
        let views = rng.random_range(1..4);
        let mut times = vec![];
        let mut v = cart;
        for _ in 0..views {
            v -= minutes(rng, 1.0, 8.0);
            times.push((v, 1));
        }
        times.push((v - minutes(rng, 0.2, 2.0), 0));
        times.reverse();
        times.extend([(cart, 2), (checkout, 3), (t, 4)]);
        c.session(cid, session, &times);
    }
    // Browsing sessions that do not convert.
    let spans: Vec<(i64, i64, f64)> = match (orders.first(), orders.last()) {
        (Some(&first), Some(_)) => vec![
            (signup, first, p.browse_before_first),
            (first, end, p.browse_per_order * orders.len() as f64),
        ],
        _ => vec![(signup, end, p.browse_prospect)],
    };
    browse(c, rng, cid, &mut session, end, &spans);
}

/// Browsing sessions that do not convert: `Poisson(mean)` sessions uniformly over each
/// `(lo, hi, mean)` span, each stopping at visit, view, cart or checkout.
fn browse(
    c: &mut Chunk,
    rng: &mut ChaCha8Rng,
    cid: i64,
    session: &mut i64,
    end: i64,
    spans: &[(i64, i64, f64)],
) {
    for &(lo, hi, mean) in spans {
        if hi <= lo || mean <= 0.0 {
            continue;
        }
        let n = rand_distr::Poisson::new(mean).map_or(0, |p| p.sample(rng) as usize);
        for _ in 0..n {
            let start = rng.random_range(lo..hi);
            browse_session(c, rng, cid, session, start, end);
        }
    }
}

/// One browsing session from `start`: visit, then view, cart and checkout with falling
/// probability, a few minutes apart, clipped to `end`.
fn browse_session(
    c: &mut Chunk,
    rng: &mut ChaCha8Rng,
    cid: i64,
    session: &mut i64,
    start: i64,
    end: i64,
) {
    *session += 1;
    let depth = match rng.random::<f64>() {
        x if x < 0.35 => 1,
        x if x < 0.75 => 2,
        x if x < 0.93 => 3,
        _ => 4,
    };
    let mut t = start;
    let mut times = vec![];
    for k in 0..depth {
        if t >= end {
            break;
        }
        times.push((t, k));
        t += (rng.random_range(0.5..6.0) * MICROS_PER_MINUTE) as i64;
    }
    c.session(cid, *session, &times);
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
            let first_order = c.p_ts.len();
            if rng.random::<f64>() < self.opts.process.buyer_share {
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
                    let cents = (spend.sample(&mut rng) * 100.0).round();
                    c.p_amount.push((cents as i64).min(MAX_CENTS));
                    k += 1;
                    // BG/NBD: the customer may drop out after each repeat purchase (not after the
                    // first one, which starts the observation).
                    if (k >= 2 && rng.random::<f64>() < p) || k >= 99_999 {
                        break;
                    }
                    t += between.sample(&mut rng) * MICROS_PER_DAY;
                }
            }
            let orders = c.p_ts[first_order..].to_vec();
            let mut erng = ChaCha8Rng::seed_from_u64(
                self.opts.seed ^ id.wrapping_mul(0xD1B5_4A32_D192_ED03) ^ 0xE7E7,
            );
            if self.opts.events {
                let p = &self.opts.process;
                simulate_events(&mut c, &mut erng, p, cid, signup, end, &orders);
                // This customer's share of the anonymous visitors: ids above every customer's.
                let k = p.anonymous_visitors;
                for j in 0..k {
                    let vid = (self.opts.customers + (id - 1) * k + j + 1) as i64;
                    let mut vrng = ChaCha8Rng::seed_from_u64(
                        self.opts.seed ^ (vid as u64).wrapping_mul(0xA24B_AED4_963E_E407) ^ 0x5EED,
                    );
                    let mut session = vid * 1_000_000;
                    let at = start + (vrng.random::<f64>() * span) as i64;
                    // A first session at the visitor's arrival, maybe more later.
                    browse_session(&mut c, &mut vrng, vid, &mut session, at, end);
                    let more = (p.browse_anonymous - 1.0).max(0.0);
                    browse(
                        &mut c,
                        &mut vrng,
                        vid,
                        &mut session,
                        end,
                        &[(at, end, more)],
                    );
                }
            }
        }
        c
    }

    /// Simulates customers in chunks, calling `sink(batches)` for each.
    fn run(&self, chunk_size: u64, mut sink: impl FnMut(Batches) -> Result<()>) -> Result<()> {
        let n = self.opts.customers;
        let mut lo = 1;
        while lo <= n {
            let hi = (lo + chunk_size).min(n + 1);
            sink(self.chunk(lo..hi).batches(self.opts.amount)?)?;
            lo = hi;
        }
        Ok(())
    }
}

/// Batches of a whole (small) generated dataset, for the embedded sample and tests.
pub fn generate_batches(opts: GenerateOptions, chunk: u64) -> Result<Tables> {
    let sim = Simulator::new(opts)?;
    let mut t = Tables::default();
    sim.run(chunk, |b| {
        t.customers.push(b.customers);
        t.purchases.push(b.purchases);
        t.events.push(b.events);
        Ok(())
    })?;
    Ok(t)
}

/// Writes `DIR/{customers,purchases,events}/part-K.parquet`, customers split into `files`
/// contiguous ranges. `progress(customers_done)` is called after each chunk. Returns the numbers
/// of customers, purchases and events.
pub fn write_parquet(
    opts: GenerateOptions,
    out: &Path,
    files: u64,
    mut progress: impl FnMut(u64),
) -> Result<(u64, u64, u64)> {
    let files = files.max(1);
    let sim = Simulator::new(opts.clone())?;
    let dir = |name: &str| -> Result<PathBuf> {
        let d = out.join(name);
        std::fs::create_dir_all(&d)?;
        Ok(d)
    };
    let (pdir, cdir) = (dir("purchases")?, dir("customers")?);
    let edir = if opts.events {
        Some(dir("events")?)
    } else {
        None
    };
    let per_file = opts.customers.div_ceil(files).max(1);
    let chunk = per_file.clamp(1, 100_000);
    let (mut n_customers, mut n_purchases, mut n_events) = (0u64, 0u64, 0u64);
    let mut file_no = 0u64;
    let mut done_in_file = 0u64;
    let open = parquet_writer;
    let mut cw = open(&cdir, 0, customers_schema())?;
    let mut pw = open(&pdir, 0, purchases_schema(opts.amount))?;
    let mut ew = edir
        .as_ref()
        .map(|d| open(d, 0, events_schema()))
        .transpose()?;
    // Chunks never straddle files: the simulator runs file by file.
    while n_customers < opts.customers {
        let lo = n_customers + 1;
        let hi = (lo + chunk.min(per_file - done_in_file)).min(opts.customers + 1);
        let b = sim.chunk(lo..hi).batches(opts.amount)?;
        n_purchases += b.purchases.num_rows() as u64;
        n_events += b.events.num_rows() as u64;
        cw.write(&b.customers)?;
        pw.write(&b.purchases)?;
        if let Some(w) = ew.as_mut() {
            w.write(&b.events)?;
        }
        n_customers += hi - lo;
        done_in_file += hi - lo;
        progress(n_customers);
        if done_in_file == per_file && n_customers < opts.customers {
            cw.close()?;
            pw.close()?;
            if let Some(w) = ew.take() {
                w.close()?;
            }
            file_no += 1;
            done_in_file = 0;
            cw = open(&cdir, file_no, customers_schema())?;
            pw = open(&pdir, file_no, purchases_schema(opts.amount))?;
            ew = edir
                .as_ref()
                .map(|d| open(d, file_no, events_schema()))
                .transpose()?;
        }
    }
    cw.close()?;
    pw.close()?;
    if let Some(w) = ew {
        w.close()?;
    }
    Ok((n_customers, n_purchases, n_events))
}

/// A writer of `DIR/part-K.parquet` (zstd level 1, row groups of 1Mi rows), the generator's files.
pub fn parquet_writer(dir: &Path, k: u64, schema: SchemaRef) -> Result<ArrowWriter<File>> {
    let props = WriterProperties::builder()
        .set_compression(Compression::ZSTD(ZstdLevel::try_new(1)?))
        .set_max_row_group_row_count(Some(1 << 20))
        .build();
    let f = File::create(dir.join(format!("part-{k:05}.parquet")))?;
    Ok(ArrowWriter::try_new(f, schema, Some(props))?)
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
            events: true,
            amount: AmountType::Decimal,
        }
    }

    #[test]
    fn deterministic_whatever_the_chunking() {
        let a = generate_batches(opts(500), 37).unwrap();
        let b = generate_batches(opts(500), 500).unwrap();
        let cat = |b: &[RecordBatch]| {
            datafusion::arrow::compute::concat_batches(&b[0].schema(), b).unwrap()
        };
        assert_eq!(cat(&a.customers), cat(&b.customers));
        assert_eq!(cat(&a.purchases), cat(&b.purchases));
        assert_eq!(cat(&a.events), cat(&b.events));
    }

    #[test]
    fn purchases_within_range_and_after_signup() {
        let o = opts(300);
        let t = generate_batches(o.clone(), 100).unwrap();
        for b in t.purchases {
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

    #[test]
    fn every_purchase_has_its_purchase_event_and_session() {
        let t = generate_batches(opts(400), 100).unwrap();
        let cat = |b: &[RecordBatch]| {
            datafusion::arrow::compute::concat_batches(&b[0].schema(), b).unwrap()
        };
        let (p, e) = (cat(&t.purchases), cat(&t.events));
        let col = |b: &RecordBatch, i: usize| -> Vec<i64> {
            let c = b.column(i);
            if let Some(a) = c.as_any().downcast_ref::<Int64Array>() {
                return a.values().to_vec();
            }
            c.as_any()
                .downcast_ref::<TimestampMicrosecondArray>()
                .unwrap()
                .values()
                .to_vec()
        };
        let kinds = e.column(3).as_any().downcast_ref::<StringArray>().unwrap();
        let mut purchase_events: Vec<(i64, i64)> = col(&e, 0)
            .into_iter()
            .zip(col(&e, 2))
            .enumerate()
            .filter(|(i, _)| kinds.value(*i) == "purchase")
            .map(|(_, x)| x)
            .collect();
        let mut orders: Vec<(i64, i64)> = col(&p, 0).into_iter().zip(col(&p, 2)).collect();
        purchase_events.sort();
        orders.sort();
        assert_eq!(purchase_events, orders);
        // Prospects browse too, and events never pass the end of the range.
        let o = opts(400);
        assert!(col(&e, 2).iter().all(|t| *t < o.end_us));
        assert!(e.num_rows() > 3 * p.num_rows());
        assert!(kinds.iter().all(|k| EVENT_TYPES.contains(&k.unwrap())));
    }
}
