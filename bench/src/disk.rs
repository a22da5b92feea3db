//! The disk's durable-write time, the allowance the p99 target of issue 7 gives the gateway over
//! nginx ("nginx's p99 plus the audit fsync time"): appends of one group-commit batch each to a
//! file whose blocks were written beforehand, as the audit log's preallocated segments are, each
//! followed by `fdatasync`, timed in an HDR histogram.

use std::io::Write;
use std::path::PathBuf;
use std::time::Instant;

use hdrhistogram::Histogram;
use serde::Serialize;

/// `isnad-bench fsync`.
#[derive(Debug, clap::Args)]
pub(crate) struct FsyncArgs {
    /// A folder on the audit log's file system (a scratch file is made and removed there).
    #[arg(long)]
    dir: PathBuf,
    /// Bytes per append (a batch of records).
    #[arg(long, default_value_t = 4096)]
    bytes: usize,
    /// Appends to time.
    #[arg(long, default_value_t = 2000)]
    count: usize,
}

/// `fdatasync` latencies, in microseconds.
#[derive(Debug, Serialize)]
pub(crate) struct Fsync {
    bytes: usize,
    count: usize,
    p50_us: u64,
    p99_us: u64,
    p999_us: u64,
    max_us: u64,
}

pub(crate) fn fsync(args: FsyncArgs) -> anyhow::Result<Fsync> {
    anyhow::ensure!(
        args.bytes > 0 && args.count > 0,
        "--bytes and --count must be positive"
    );
    let path = args
        .dir
        .join(format!(".isnad-bench-fsync-{}", std::process::id()));
    let result = (|| {
        let mut file = std::fs::File::create(&path)?;
        // Preallocated with written zeros, as the audit log does: no metadata in each sync.
        let zeros = vec![0u8; 1 << 20];
        for _ in 0..(args.bytes * args.count).div_ceil(zeros.len()) {
            file.write_all(&zeros)?;
        }
        file.sync_all()?;
        // Written again from the start, over the zeros.
        let mut file = std::fs::OpenOptions::new().write(true).open(&path)?;
        let batch = vec![0xA5u8; args.bytes];
        let mut histogram = Histogram::<u64>::new_with_bounds(1, 60_000_000, 3)?;
        for _ in 0..args.count {
            file.write_all(&batch)?;
            let started = Instant::now();
            file.sync_data()?;
            histogram.record((started.elapsed().as_micros() as u64).clamp(1, 60_000_000))?;
        }
        Ok(Fsync {
            bytes: args.bytes,
            count: args.count,
            p50_us: histogram.value_at_quantile(0.5),
            p99_us: histogram.value_at_quantile(0.99),
            p999_us: histogram.value_at_quantile(0.999),
            max_us: histogram.max(),
        })
    })();
    let _ = std::fs::remove_file(&path);
    result
}
