//! A Markdown report from the JSON of several load runs.

use std::path::PathBuf;

use crate::load::LoadResult;

#[derive(Debug, clap::Args)]
pub(crate) struct ReportArgs {
    /// JSON results, one per file; the first is the baseline of the ratios.
    files: Vec<PathBuf>,
    /// Ratios to print, as A/B by scenario name (e.g. isnad/nginx).
    #[arg(long = "ratio")]
    ratios: Vec<String>,
}

pub(crate) fn run(args: ReportArgs) -> anyhow::Result<()> {
    let results: Vec<LoadResult> = args
        .files
        .iter()
        .map(|path| {
            let text = std::fs::read_to_string(path)?;
            Ok(serde_json::from_str(text.trim())?)
        })
        .collect::<anyhow::Result<_>>()?;
    println!("| scenario | requests/s | errors | p50 ms | p99 ms | p99.9 ms | CPU us/request |");
    println!("|---|---:|---:|---:|---:|---:|---|");
    for r in &results {
        let cpu: Vec<String> = r
            .cpu_us_per_request
            .iter()
            .map(|(name, us)| format!("{name} {us:.0}"))
            .collect();
        println!(
            "| {} | {:.0} | {} | {:.2} | {:.2} | {:.2} | {} |",
            r.name,
            r.throughput,
            r.errors,
            r.p50_us as f64 / 1000.0,
            r.p99_us as f64 / 1000.0,
            r.p999_us as f64 / 1000.0,
            cpu.join(", ")
        );
    }
    println!();
    for ratio in &args.ratios {
        let (a, b) = ratio
            .split_once('/')
            .ok_or_else(|| anyhow::anyhow!("--ratio A/B, got {ratio}"))?;
        let find = |name: &str| {
            results
                .iter()
                .find(|r| r.name == name)
                .ok_or_else(|| anyhow::anyhow!("no scenario named {name}"))
        };
        let (ra, rb) = (find(a)?, find(b)?);
        println!(
            "- throughput {a}/{b}: **{:.2}x** ({:.0} / {:.0} requests/s)",
            ra.throughput / rb.throughput,
            ra.throughput,
            rb.throughput
        );
    }
    Ok(())
}
