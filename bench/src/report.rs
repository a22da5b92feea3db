//! A Markdown report from the JSON of several load runs, grouped by scenario name. Runs of
//! different scenarios taken in the same round (in order) are paired for the ratios.

use std::path::PathBuf;

use crate::load::LoadResult;

#[derive(Debug, clap::Args)]
pub(crate) struct ReportArgs {
    /// JSON results, one per file, in the order they ran.
    files: Vec<PathBuf>,
    /// Throughput ratios to print, as A/B by scenario name (e.g. isnad/nginx).
    #[arg(long = "ratio")]
    ratios: Vec<String>,
    /// Latency ratios (p50, p99, p99.9) to print, as A/B by scenario name.
    #[arg(long = "latency-ratio")]
    latency_ratios: Vec<String>,
}

/// The median over `runs` of each process's value of a per-process figure, in the order of the
/// first run.
fn medians(
    runs: &[&LoadResult],
    figure: fn(&LoadResult) -> &Vec<(String, f64)>,
) -> Vec<(String, f64)> {
    let Some(first) = runs.first() else {
        return Vec::new();
    };
    figure(first)
        .iter()
        .map(|(process, _)| {
            let mut values: Vec<f64> = runs
                .iter()
                .filter_map(|r| figure(r).iter().find(|(p, _)| p == process))
                .map(|(_, value)| *value)
                .collect();
            (process.clone(), median(&mut values))
        })
        .collect()
}

/// Reads one latency quantile of a run, in microseconds.
type Quantile = fn(&LoadResult) -> u64;

/// The median, lowest and highest of per-round values, and the values.
fn summary(mut per_round: Vec<f64>) -> String {
    let low = per_round.iter().copied().fold(f64::INFINITY, f64::min);
    let high = per_round.iter().copied().fold(0.0, f64::max);
    let rounds: Vec<String> = per_round.iter().map(|r| format!("{r:.2}")).collect();
    format!(
        "**{:.2}x** median over rounds (range {low:.2} to {high:.2}; rounds {})",
        median(&mut per_round),
        rounds.join(", ")
    )
}

fn median(values: &mut [f64]) -> f64 {
    values.sort_by(f64::total_cmp);
    let n = values.len();
    if n == 0 {
        0.0
    } else if n % 2 == 1 {
        values[n / 2]
    } else {
        (values[n / 2 - 1] + values[n / 2]) / 2.0
    }
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
    let mut names: Vec<&str> = Vec::new();
    for r in &results {
        if !names.contains(&r.name.as_str()) {
            names.push(&r.name);
        }
    }
    fn runs<'a>(results: &'a [LoadResult], name: &'a str) -> impl Iterator<Item = &'a LoadResult> {
        results.iter().filter(move |r| r.name == name)
    }
    if let Some(first) = results.first() {
        println!(
            "{}; {} round(s).",
            first.mode,
            runs(&results, &first.name).count()
        );
        println!();
    }
    println!(
        "| scenario | requests/s | errors | p50 ms | p99 ms | p99.9 ms | CPU us/request | errors by reason |"
    );
    println!("|---|---:|---:|---:|---:|---:|---|---|");
    for name in &names {
        let all: Vec<&LoadResult> = runs(&results, name).collect();
        let requests: u64 = all.iter().map(|r| r.requests).sum();
        let seconds: f64 = all.iter().map(|r| r.seconds).sum();
        let errors: u64 = all.iter().map(|r| r.errors).sum();
        let quantile = |f: fn(&LoadResult) -> u64| {
            median(&mut all.iter().map(|r| f(r) as f64 / 1000.0).collect::<Vec<_>>())
        };
        let cores = medians(&all, |r| &r.cpu_cores);
        let cpu: Vec<String> = medians(&all, |r| &r.cpu_us_per_request)
            .into_iter()
            .map(
                |(process, us)| match cores.iter().find(|(p, _)| *p == process) {
                    Some((_, cores)) => format!("{process} {us:.0} ({cores:.2} cores)"),
                    None => format!("{process} {us:.0}"),
                },
            )
            .collect();
        let mut failures: std::collections::BTreeMap<&str, u64> = Default::default();
        for run in &all {
            for (why, count) in &run.failures {
                *failures.entry(why).or_default() += count;
            }
        }
        let failures: Vec<String> = failures
            .iter()
            .map(|(why, count)| format!("{why} {count}"))
            .collect();
        println!(
            "| {name} | {:.0} | {errors} | {:.2} | {:.2} | {:.2} | {} | {} |",
            requests as f64 / seconds,
            quantile(|r| r.p50_us),
            quantile(|r| r.p99_us),
            quantile(|r| r.p999_us),
            cpu.join(", "),
            failures.join(", ")
        );
    }
    println!();
    println!("Requests/s: all rounds together. Latencies and CPU: median over rounds.");
    println!();
    if results.iter().any(|r| !r.switches_per_request.is_empty()) {
        println!(
            "| scenario | context switches/request | read and write system calls/request | machine's idle cores |"
        );
        println!("|---|---|---|---:|");
        for name in &names {
            let all: Vec<&LoadResult> = runs(&results, name).collect();
            let show = |values: Vec<(String, f64)>| {
                let shown: Vec<String> = values
                    .iter()
                    .map(|(process, n)| format!("{process} {n:.2}"))
                    .collect();
                shown.join(", ")
            };
            let mut idle: Vec<f64> = all.iter().filter_map(|r| r.idle_cores).collect();
            let idle = if idle.is_empty() {
                "-".to_owned()
            } else {
                format!("{:.2}", median(&mut idle))
            };
            println!(
                "| {name} | {} | {} | {idle} |",
                show(medians(&all, |r| &r.switches_per_request)),
                show(medians(&all, |r| &r.io_calls_per_request))
            );
        }
        println!();
        println!(
            "Per process, every thread, median over rounds. Idle cores: the whole machine's idle \
             and I/O wait time over the measured time, whatever ran on it."
        );
        println!();
    }
    for ratio in &args.ratios {
        let (a, b) = ratio
            .split_once('/')
            .ok_or_else(|| anyhow::anyhow!("--ratio A/B, got {ratio}"))?;
        let per_round: Vec<f64> = runs(&results, a)
            .zip(runs(&results, b))
            .map(|(ra, rb)| ra.throughput / rb.throughput)
            .collect();
        anyhow::ensure!(!per_round.is_empty(), "no runs of {a} and {b}");
        println!("- throughput {a}/{b}: {}", summary(per_round));
    }
    for ratio in &args.latency_ratios {
        let (a, b) = ratio
            .split_once('/')
            .ok_or_else(|| anyhow::anyhow!("--latency-ratio A/B, got {ratio}"))?;
        let quantiles: [(&str, Quantile); 3] = [
            ("p50", |r| r.p50_us),
            ("p99", |r| r.p99_us),
            ("p99.9", |r| r.p999_us),
        ];
        for (label, quantile) in quantiles {
            let per_round: Vec<f64> = runs(&results, a)
                .zip(runs(&results, b))
                .map(|(ra, rb)| quantile(ra) as f64 / quantile(rb).max(1) as f64)
                .collect();
            anyhow::ensure!(!per_round.is_empty(), "no runs of {a} and {b}");
            println!("- {label} latency {a}/{b}: {}", summary(per_round));
        }
    }
    Ok(())
}
