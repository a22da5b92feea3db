//! The audit engine's speed, each figure beside its target and, where one exists, a baseline
//! measured in the same run:
//!
//! - durable appends with 64 in flight (64 threads calling `append_wait`), to a log that grows
//!   its segment with each batch (`preallocate: 0`) and to one that keeps zeros ahead (the
//!   default): throughput, acknowledgement latency p50/p99/p99.9 (hdrhistogram), and CPU per
//!   record (the whole process, and the writer thread alone), against raw `write` +
//!   `fdatasync` of the same frames in batches of 64 (what group commit could at best reach on
//!   this disk), to a growing file and to a file whose blocks were written with zeros
//!   beforehand;
//! - inclusion and consistency proofs on a log of 10 million records (built once; give
//!   `AUDIT_BENCH_LOG=DIR` to keep it and reuse it on the next run);
//! - offline verification (`verify_dir`, one thread) of 1 million records, against reading the
//!   same segment files and SHA-256 of each record alone.
//!
//! ```sh
//! cargo bench -p isnad-bench --features audit-bench --bench audit
//! AUDIT_BENCH_LOG=/work/audit-bench-10m cargo bench -p isnad-bench --features audit-bench --bench audit
//! # only the append phase, with each preallocation size in turn (twice)
//! AUDIT_BENCH_CHUNKS=0,262144,1048576,4194304 cargo bench -p isnad-bench --features audit-bench --bench audit
//! ```

use std::fs::File;
use std::hint::black_box;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, mpsc};
use std::time::{Duration, Instant};

use criterion::{Criterion, criterion_group, criterion_main};
use hdrhistogram::Histogram;
use isnad_audit::merkle::{leaf_hash, verify_inclusion};
use isnad_audit::segment::encode_frame;
use isnad_audit::{AuditLog, CheckpointSigner, LeafIndex, Options, TreeSize, verify_dir};
use isnad_bench::synthetic::audit_record as record;

// The allocator of the `isnad` binary, so that the figures are the gateway's.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

const BIG_LOG: u64 = 10_000_000;
const VERIFY_LOG: u64 = 1_000_000;
const IN_FLIGHT: usize = 64;
const APPEND_SECONDS: u64 = 5;

fn signer() -> Arc<CheckpointSigner> {
    let pkcs8 = CheckpointSigner::generate_pkcs8().expect("key");
    Arc::new(CheckpointSigner::from_pkcs8("bench.isnad/log", &pkcs8).expect("signer"))
}

/// Fills `dir` with `n` records (appended 4,096 at a time in flight), if it has fewer.
fn build_log(dir: &Path, n: u64) -> AuditLog {
    let (log, recovery) = AuditLog::open(
        dir,
        Options {
            index: false,
            ..Options::default()
        },
    )
    .expect("opens");
    let have = recovery.size.0;
    if have >= n {
        return log;
    }
    let started = Instant::now();
    let (tx, rx) = mpsc::channel();
    let mut sent = have;
    let mut done = have;
    while done < n {
        while sent < n && sent - done < 4096 {
            let tx = tx.clone();
            log.append(record(sent), move |r| {
                tx.send(r.is_ok()).expect("channel");
            });
            sent += 1;
        }
        assert!(rx.recv().expect("answer"), "bench append failed");
        done += 1;
        if done % 1_000_000 == 0 {
            eprintln!("  built {done} records in {:.0?}", started.elapsed());
        }
    }
    eprintln!("  built {} records in {:.1?}", n - have, started.elapsed());
    log
}

fn segment_bytes(dir: &Path) -> u64 {
    std::fs::read_dir(dir.join("segments"))
        .expect("segments")
        .map(|e| e.expect("entry").metadata().expect("meta").len())
        .sum()
}

/// CPU time from /proc (Linux): what the append phase costs, beside what it achieves.
mod cpu {
    use std::time::Duration;

    /// Clock ticks per second of /proc's `stat` files (USER_HZ, 100 on Linux's ABI).
    const USER_HZ: u64 = 100;

    /// Fields after the command name (which is in parentheses and may hold spaces).
    fn stat_fields(path: &str) -> Vec<u64> {
        let text = std::fs::read_to_string(path).unwrap_or_default();
        let rest = text.rsplit_once(')').map_or("", |(_, r)| r);
        rest.split_whitespace()
            .map(|f| f.parse().unwrap_or(0))
            .collect()
    }

    /// User and system CPU of the whole process, every thread it ran (those gone too).
    pub(crate) fn process() -> (Duration, Duration) {
        let f = stat_fields("/proc/self/stat");
        // utime and stime are fields 14 and 15 of stat(5); the list starts at field 3.
        let tick = |n: u64| Duration::from_nanos(n * 1_000_000_000 / USER_HZ);
        (tick(f[11]), tick(f[12]))
    }

    /// The id of this process's thread named `name`.
    pub(crate) fn thread_named(name: &str) -> Option<String> {
        std::fs::read_dir("/proc/self/task").ok()?.find_map(|e| {
            let tid = e.ok()?.file_name().to_string_lossy().into_owned();
            let comm = std::fs::read_to_string(format!("/proc/self/task/{tid}/comm")).ok()?;
            (comm.trim_end() == name).then_some(tid)
        })
    }

    /// A thread's CPU: on-CPU time from schedstat (nanoseconds), and the system share of its
    /// user + system ticks.
    pub(crate) fn thread(tid: &str) -> (Duration, u64, u64) {
        let on_cpu = std::fs::read_to_string(format!("/proc/self/task/{tid}/schedstat"))
            .ok()
            .and_then(|t| t.split_whitespace().next()?.parse().ok())
            .unwrap_or(0);
        let f = stat_fields(&format!("/proc/self/task/{tid}/stat"));
        (Duration::from_nanos(on_cpu), f[11], f[12])
    }

    /// The calling thread's on-CPU time.
    pub(crate) fn this_thread() -> Duration {
        let ns = std::fs::read_to_string("/proc/thread-self/schedstat")
            .ok()
            .and_then(|t| t.split_whitespace().next()?.parse().ok())
            .unwrap_or(0);
        Duration::from_nanos(ns)
    }
}

struct Raw {
    per_second: f64,
    cpu_us_per_record: f64,
}

/// One append phase: 64 threads on a fresh log for APPEND_SECONDS.
struct Phase {
    per_second: f64,
    p50_ms: f64,
    p99_ms: f64,
    p999_ms: f64,
    max_ms: f64,
    /// Process CPU (user + system, every thread) per acknowledged record.
    process_us: f64,
    process_sys_us: f64,
    /// The writer thread's CPU per record, and the system share of it.
    writer_us: f64,
    writer_sys_share: f64,
    syncs_per_record: f64,
}

struct AppendFigures {
    /// The log growing its segment with every batch (`preallocate: 0`, as before zeros were
    /// kept ahead).
    growing: Phase,
    /// The log as configured by default.
    preallocated: Phase,
    raw_before: Raw,
    raw_after: Raw,
    zeroed_before: Raw,
    zeroed_after: Raw,
}

/// The same frames as the log writes, 64 per `write` + `fdatasync`, one thread, for `seconds`:
/// records per second and this thread's CPU per record. With `zeroed`, the file's first
/// `zeroed` bytes are written with zeros and synced first, so that the writes that follow do
/// not grow it (no metadata in their syncs); they stop early rather than go past them.
fn raw_appends(path: &Path, seconds: u64, zeroed: u64) -> Raw {
    let mut raw = File::create(path).expect("raw file");
    if zeroed > 0 {
        let zeros = vec![0u8; 1 << 20];
        let mut left = zeroed;
        while left > 0 {
            let n = left.min(zeros.len() as u64) as usize;
            raw.write_all(&zeros[..n]).expect("zeros");
            left -= n as u64;
        }
        raw.sync_all().expect("fsync");
        raw = std::fs::OpenOptions::new()
            .write(true)
            .open(path)
            .expect("raw file");
    }
    let mut frames = Vec::new();
    let mut written = 0u64;
    let cpu = cpu::this_thread();
    let started = Instant::now();
    let mut bytes = 0u64;
    while started.elapsed() < Duration::from_secs(seconds) {
        if zeroed > 0 && bytes + frames.len() as u64 > zeroed {
            break;
        }
        frames.clear();
        for k in 0..IN_FLIGHT as u64 {
            encode_frame(LeafIndex(written + k), &record(written + k), &mut frames);
        }
        raw.write_all(&frames).expect("write");
        raw.sync_data().expect("fdatasync");
        written += IN_FLIGHT as u64;
        bytes += frames.len() as u64;
    }
    let elapsed = started.elapsed().as_secs_f64();
    let cpu = cpu::this_thread() - cpu;
    Raw {
        per_second: written as f64 / elapsed,
        cpu_us_per_record: cpu.as_secs_f64() * 1e6 / written as f64,
    }
}

/// Zeros written before the zeroed baseline: 3 s at 300,000 records/s.
const ZEROED_BYTES: u64 = 512 << 20;

/// The raw baselines, then 64 threads appending for APPEND_SECONDS to a log that grows its
/// segment with each batch and then to one that keeps zeros ahead (the default), then the
/// baselines again (the disk's sync latency drifts with background writeback; both are
/// reported).
fn measure_appends(tmp: &Path) -> AppendFigures {
    let raw_before = raw_appends(&tmp.join("raw-before.seg"), 3, 0);
    let zeroed_before = raw_appends(&tmp.join("zeroed-before.seg"), 3, ZEROED_BYTES);
    let _ = std::fs::remove_file(tmp.join("zeroed-before.seg"));
    let growing = append_phase(
        &tmp.join("appends-growing"),
        Options {
            preallocate: 0,
            ..Options::default()
        },
    );
    let preallocated = append_phase(&tmp.join("appends"), Options::default());
    let raw_after = raw_appends(&tmp.join("raw-after.seg"), 3, 0);
    let zeroed_after = raw_appends(&tmp.join("zeroed-after.seg"), 3, ZEROED_BYTES);
    let _ = std::fs::remove_file(tmp.join("zeroed-after.seg"));
    AppendFigures {
        growing,
        preallocated,
        raw_before,
        raw_after,
        zeroed_before,
        zeroed_after,
    }
}

fn append_phase(dir: &Path, options: Options) -> Phase {
    let (log, _) = AuditLog::open(dir, options).expect("opens");
    // A new thread names itself once it runs: wait for it.
    let writer = (0..1000)
        .find_map(|_| {
            let found = cpu::thread_named("audit-writer");
            if found.is_none() {
                std::thread::sleep(Duration::from_millis(1));
            }
            found
        })
        .expect("the writer thread");
    let (writer_cpu, writer_user, writer_sys) = cpu::thread(&writer);
    let (process_user, process_sys) = cpu::process();
    let syncs = log.stats().syncs;
    let deadline = Instant::now() + Duration::from_secs(APPEND_SECONDS);
    let total = Arc::new(AtomicU64::new(0));
    let merged = Arc::new(Mutex::new(
        Histogram::<u64>::new_with_bounds(1, 60_000_000, 3).expect("histogram"),
    ));
    let started = Instant::now();
    let threads: Vec<_> = (0..IN_FLIGHT as u64)
        .map(|t| {
            let (log, total, merged) = (log.clone(), total.clone(), merged.clone());
            std::thread::spawn(move || {
                let mut hist = Histogram::<u64>::new_with_bounds(1, 60_000_000, 3).expect("h");
                let mut i = t;
                while Instant::now() < deadline {
                    let bytes = record(i);
                    let sent = Instant::now();
                    log.append_wait(bytes).expect("durable append");
                    hist.record(sent.elapsed().as_micros().max(1) as u64)
                        .expect("record");
                    total.fetch_add(1, Ordering::Relaxed);
                    i += IN_FLIGHT as u64;
                }
                merged.lock().expect("lock").add(&hist).expect("merge");
            })
        })
        .collect();
    for t in threads {
        t.join().expect("thread");
    }
    let elapsed = started.elapsed().as_secs_f64();
    let n = total.load(Ordering::Relaxed);
    let (process_user_end, process_sys_end) = cpu::process();
    let (writer_cpu_end, writer_user_end, writer_sys_end) = cpu::thread(&writer);
    let syncs = log.stats().syncs - syncs;
    drop(log);
    let hist = merged.lock().expect("lock");
    let per_record = |d: Duration| d.as_secs_f64() * 1e6 / n as f64;
    let writer_ticks = (writer_user_end - writer_user) + (writer_sys_end - writer_sys);
    Phase {
        per_second: n as f64 / elapsed,
        p50_ms: hist.value_at_quantile(0.50) as f64 / 1000.0,
        p99_ms: hist.value_at_quantile(0.99) as f64 / 1000.0,
        p999_ms: hist.value_at_quantile(0.999) as f64 / 1000.0,
        max_ms: hist.max() as f64 / 1000.0,
        process_us: per_record((process_user_end - process_user) + (process_sys_end - process_sys)),
        process_sys_us: per_record(process_sys_end - process_sys),
        writer_us: per_record(writer_cpu_end - writer_cpu),
        writer_sys_share: (writer_sys_end - writer_sys) as f64 / writer_ticks.max(1) as f64,
        syncs_per_record: syncs as f64 / n as f64,
    }
}

/// Reads every segment file with large reads and hashes each frame's payload, with no other
/// check: the floor under verification on this machine.
fn raw_read_and_hash(dir: &Path) -> u64 {
    let mut paths: Vec<PathBuf> = std::fs::read_dir(dir.join("segments"))
        .expect("segments")
        .map(|e| e.expect("entry").path())
        .collect();
    paths.sort();
    let mut records = 0;
    let mut buf = Vec::new();
    for p in paths {
        buf.clear();
        File::open(p)
            .expect("open")
            .read_to_end(&mut buf)
            .expect("read");
        let mut at = 24;
        while at + 16 <= buf.len() {
            let len = u32::from_le_bytes(buf[at..at + 4].try_into().expect("4")) as usize;
            black_box(leaf_hash(&buf[at + 16..at + 16 + len]));
            at += 16 + len;
            records += 1;
        }
    }
    records
}

/// `AUDIT_BENCH_CHUNKS=0,262144,1048576,4194304`: append phases with each of these
/// `Options::preallocate` sizes, in turn, twice (how the default was chosen), and nothing else.
fn compare_chunks(tmp: &Path, list: &str) {
    let chunks: Vec<u64> = list
        .split(',')
        .map(|c| {
            c.trim()
                .parse()
                .expect("AUDIT_BENCH_CHUNKS: sizes in bytes")
        })
        .collect();
    println!(
        "| preallocate | appends/s | p50 / p99 / p99.9 / max ms | writer us/record (system) | process us/record | syncs/record |"
    );
    println!("|---:|---:|---|---:|---:|---:|");
    for round in 0..2 {
        for (k, &chunk) in chunks.iter().enumerate() {
            let options = Options {
                preallocate: chunk,
                ..Options::default()
            };
            let p = append_phase(&tmp.join(format!("chunks-{round}-{k}")), options);
            println!(
                "| {} KiB | {:.0} | {:.2} / {:.2} / {:.2} / {:.2} | {:.2} ({:.0}%) | {:.2} | {:.4} |",
                chunk >> 10,
                p.per_second,
                p.p50_ms,
                p.p99_ms,
                p.p999_ms,
                p.max_ms,
                p.writer_us,
                p.writer_sys_share * 100.0,
                p.process_us,
                p.syncs_per_record
            );
        }
    }
}

fn bench(c: &mut Criterion) {
    let tmp =
        tempfile::tempdir_in(std::env::var_os("AUDIT_BENCH_TMP").unwrap_or_else(|| "/tmp".into()))
            .expect("tempdir");
    if let Ok(list) = std::env::var("AUDIT_BENCH_CHUNKS") {
        compare_chunks(tmp.path(), &list);
        return;
    }
    eprintln!("record size: {} bytes", record(0).len());

    // 1. Durable appends with 64 in flight.
    let appends = measure_appends(tmp.path());

    // 2. Proofs on 10 million records.
    let big_dir = std::env::var_os("AUDIT_BENCH_LOG")
        .map(PathBuf::from)
        .unwrap_or_else(|| tmp.path().join("big"));
    eprintln!(
        "building or reusing the {BIG_LOG}-record log in {}",
        big_dir.display()
    );
    let big = build_log(&big_dir, BIG_LOG);
    let size = big.size();
    let root = big.root();
    let mut group = c.benchmark_group("audit");
    let mut seed = 0x2545_F491_4F6C_DD1Du64;
    let mut next_leaf = move || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        LeafIndex(seed % size.0)
    };
    // Check one proof before timing them.
    let probe = next_leaf();
    let proof = big.inclusion_proof(probe, size).expect("proof");
    verify_inclusion(
        probe,
        size,
        &big.leaf_hash(probe).expect("leaf"),
        &proof,
        &root,
    )
    .expect("the bench log's proofs verify");
    group.bench_function("inclusion proof, random leaf of 10M", |b| {
        b.iter(|| black_box(big.inclusion_proof(next_leaf(), size).expect("proof")))
    });
    let mut old = 1u64;
    group.bench_function("consistency proof, random old size to 10M", |b| {
        b.iter(|| {
            old = (old * 6_364_136_223_846_793_005 + 1) % size.0 + 1;
            black_box(
                big.consistency_proof(TreeSize(old.min(size.0)), size)
                    .expect("proof"),
            )
        })
    });
    drop(big);

    // 3. Offline verification of 1 million records (a prefix-sized log of its own, so that a
    // run does not take minutes).
    let verify_dir_path = tmp.path().join("verify");
    {
        let signer = signer();
        let (log, _) = AuditLog::open(
            &verify_dir_path,
            Options {
                signer: Some(signer.clone()),
                checkpoint_interval: Duration::from_secs(3600),
                index: false,
                ..Options::default()
            },
        )
        .expect("opens");
        drop(log);
        build_log(&verify_dir_path, VERIFY_LOG);
        let (log, _) = AuditLog::open(
            &verify_dir_path,
            Options {
                signer: Some(signer),
                checkpoint_interval: Duration::from_secs(3600),
                index: false,
                ..Options::default()
            },
        )
        .expect("opens");
        log.checkpoint_now().expect("checkpoint");
    }
    let key = isnad_audit::load_key(&verify_dir_path).expect("log.pub");
    let bytes = segment_bytes(&verify_dir_path);
    group.sample_size(10);
    group.measurement_time(Duration::from_secs(20));
    group.bench_function("verify_dir, 1M records", |b| {
        b.iter(|| black_box(verify_dir(&verify_dir_path, &key, |_, _| {}).expect("verifies")))
    });
    group.bench_function("baseline: read + SHA-256 per record, 1M records", |b| {
        b.iter(|| black_box(raw_read_and_hash(&verify_dir_path)))
    });
    group.finish();

    // Our own timing of the same, for the summary (criterion's estimates are in its report).
    let time = |f: &mut dyn FnMut()| {
        let mut best = f64::MAX;
        for _ in 0..3 {
            let t = Instant::now();
            f();
            best = best.min(t.elapsed().as_secs_f64());
        }
        best
    };
    let verify_s = time(&mut || {
        verify_dir(&verify_dir_path, &key, |_, _| {}).expect("verifies");
    });
    let raw_s = time(&mut || {
        raw_read_and_hash(&verify_dir_path);
    });
    let big = build_log(&big_dir, BIG_LOG);
    let proofs = 100_000;
    let mut leaf = 12_345u64;
    let t = Instant::now();
    for _ in 0..proofs {
        leaf = (leaf * 6_364_136_223_846_793_005 + 1_442_695_040_888_963_407) % size.0;
        black_box(big.inclusion_proof(LeafIndex(leaf), size).expect("proof"));
    }
    let proof_us = t.elapsed().as_secs_f64() * 1e6 / proofs as f64;

    println!();
    println!("## audit engine summary");
    println!("| what | measured | target | baseline, same run | ratio |");
    println!("|---|---:|---|---:|---:|");
    let a = &appends;
    for (what, p) in [
        ("segment grown by each batch", &a.growing),
        ("1 MiB of zeros kept ahead (default)", &a.preallocated),
    ] {
        println!(
            "| durable appends/s, {IN_FLIGHT} in flight ({APPEND_SECONDS} s), {what} | {:.0} | >= 50,000 | raw write+fdatasync of the same frames, {IN_FLIGHT} per sync, growing file, before / after: {:.0} / {:.0} | {:.2}x / {:.2}x |",
            p.per_second,
            a.raw_before.per_second,
            a.raw_after.per_second,
            p.per_second / a.raw_before.per_second,
            p.per_second / a.raw_after.per_second
        );
        println!(
            "| | | | the same into a file of zeros written beforehand, before / after: {:.0} / {:.0} | {:.2}x / {:.2}x |",
            a.zeroed_before.per_second,
            a.zeroed_after.per_second,
            p.per_second / a.zeroed_before.per_second,
            p.per_second / a.zeroed_after.per_second
        );
        println!(
            "| ack latency p50 / p99 / p99.9 / max | {:.2} / {:.2} / {:.2} / {:.2} ms | p99 <= 10 ms | | |",
            p.p50_ms, p.p99_ms, p.p999_ms, p.max_ms
        );
        println!(
            "| writer thread CPU per record (system share) | {:.2} us ({:.0}% system), {:.4} syncs per record | | raw thread, growing file, before / after: {:.2} / {:.2} us; zeroed file: {:.2} / {:.2} us | {:.2}x / {:.2}x |",
            p.writer_us,
            p.writer_sys_share * 100.0,
            p.syncs_per_record,
            a.raw_before.cpu_us_per_record,
            a.raw_after.cpu_us_per_record,
            a.zeroed_before.cpu_us_per_record,
            a.zeroed_after.cpu_us_per_record,
            p.writer_us / a.raw_before.cpu_us_per_record,
            p.writer_us / a.raw_after.cpu_us_per_record
        );
        println!(
            "| process CPU per record, all threads (system) | {:.2} us ({:.2} us) | | | |",
            p.process_us, p.process_sys_us
        );
    }
    println!(
        "| inclusion proof, random leaf of {} (mean of {proofs}) | {proof_us:.1} us | <= 100 us | | |",
        size.0
    );
    println!(
        "| offline verification, {} records, {:.0} MB, one thread | {:.0} records/s | >= 1,000,000/s | read + SHA-256 only: {:.0} records/s | {:.2}x |",
        VERIFY_LOG,
        bytes as f64 / 1e6,
        VERIFY_LOG as f64 / verify_s,
        VERIFY_LOG as f64 / raw_s,
        raw_s / verify_s
    );
}

criterion_group!(benches, bench);
criterion_main!(benches);
