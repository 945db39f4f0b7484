//! A small ETL job: read JSON-lines request specs, fetch them on one thread per core with many
//! requests in flight, parse the JSON bodies in the same rayon workers, aggregate, and write
//! every outcome as a JSON record, all against an embedded loopback server.
//!
//! Run it with `cargo run --release --features serde --example etl`.

#[path = "../tests/support/mod.rs"]
mod support;

use std::collections::BTreeMap;
use std::io::{BufRead, BufWriter, Write};
use std::time::{Duration, Instant};

use parfetch::prelude::*;
use parfetch::{Fetcher, Request, RetryPolicy};
use rayon::prelude::*;
use serde_json::{Value, json};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let server = support::TestServer::start();
    let dir = std::env::temp_dir().join(format!("parfetch-etl-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;

    // Extract: a JSON-lines file of request specs, as another system would hand it over; a few
    // lines are broken on purpose.
    let specs_path = dir.join("specs.jsonl");
    let mut specs = BufWriter::new(std::fs::File::create(&specs_path)?);
    for i in 0..20_000 {
        let line = match i % 1_000 {
            7 => r#"{"url": "http://127.0.0.1/", "verify": false}"#.to_owned(),
            13 => "{not json".to_owned(),
            _ => {
                let region = ["eu", "us", "apac"][i % 3];
                json!({
                    "method": "POST",
                    "url": server.url(&format!("/echo?order={i}")),
                    "headers": {"X-Region": region},
                    "json": {"order": i, "amount": (i % 97) as f64 * 1.25},
                    "timeout": 5.0,
                })
                .to_string()
            }
        };
        writeln!(specs, "{line}")?;
    }
    specs.flush()?;

    let started = Instant::now();
    let mut requests = Vec::new();
    let mut rejected = Vec::new();
    for (number, line) in std::io::BufReader::new(std::fs::File::open(&specs_path)?)
        .lines()
        .enumerate()
    {
        match Request::from_spec_json(&line?) {
            Ok(request) => requests.push(request),
            Err(error) => rejected.push(format!("line {}: {error}", number + 1)),
        }
    }

    // Transform: fetch and parse in the same pipeline; the JSON work runs on the same threads.
    let fetcher = Fetcher::builder()
        .retry(RetryPolicy::new(3).backoff(Duration::from_millis(50), Duration::from_secs(2)))
        .build()?;
    let rows: Vec<(Option<(String, f64)>, String)> = requests
        .par_iter()
        .fetch_with(&fetcher)
        .map(|outcome| {
            let record = match &outcome {
                Ok(response) => serde_json::to_string(response),
                Err(exception) => serde_json::to_string(exception),
            }
            .expect("records serialize");
            let row = outcome.ok().and_then(|response| {
                let echo: Value = response.json().ok()?;
                let region = echo["headers"]["x-region"].as_str()?.to_owned();
                let sent: Value = serde_json::from_str(echo["body"].as_str()?).ok()?;
                Some((region, sent["amount"].as_f64()?))
            });
            (row, record)
        })
        .collect();

    // Load: the aggregate, and every outcome as a record.
    let mut by_region: BTreeMap<String, (u64, f64)> = BTreeMap::new();
    let records_path = dir.join("records.jsonl");
    let mut records = BufWriter::new(std::fs::File::create(&records_path)?);
    for (row, record) in &rows {
        writeln!(records, "{record}")?;
        if let Some((region, amount)) = row {
            let entry = by_region.entry(region.clone()).or_default();
            entry.0 += 1;
            entry.1 += amount;
        }
    }
    records.flush()?;

    println!(
        "{} specs read, {} rejected, {} fetched in {:.2?}",
        requests.len() + rejected.len(),
        rejected.len(),
        rows.len(),
        started.elapsed()
    );
    println!(
        "  first rejected: {}",
        rejected.first().map_or("none", String::as_str)
    );
    for (region, (orders, total)) in &by_region {
        println!("  {region:>5}: {orders:>5} orders, {total:>10.2} total");
    }
    println!("  records: {}", records_path.display());
    assert_eq!(
        by_region.values().map(|v| v.0).sum::<u64>() as usize,
        requests.len()
    );
    std::fs::remove_dir_all(&dir)?;
    Ok(())
}
