//! Group commit: many appends in flight share writes and syncs, and every acknowledgement
//! names a durable record.

mod common;

use std::collections::HashMap;
use std::sync::{Arc, Mutex, mpsc};

use common::*;
use isnad_audit::{AuditLog, LeafIndex, Options, TreeSize};

fn tagged(thread: u64, seq: u64) -> Vec<u8> {
    let mut r = record(thread * 1000 + seq);
    r.request_id = format!("thread-{thread}-seq-{seq}");
    r.encode().expect("encodes")
}

#[test]
fn sixty_four_threads_get_unique_dense_durable_indexes() {
    let dir = tempfile::tempdir().expect("tempdir");
    let signer = signer();
    let per_thread = 40u64;
    let acked: Arc<Mutex<HashMap<u64, Vec<u8>>>> = Arc::default();
    {
        let (log, _) = AuditLog::open(
            dir.path(),
            Options {
                segment_size: 64 * 1024,
                ..options(&signer)
            },
        )
        .expect("opens");
        let threads: Vec<_> = (0..64u64)
            .map(|t| {
                let log = log.clone();
                let acked = acked.clone();
                std::thread::spawn(move || {
                    for seq in 0..per_thread {
                        let bytes = tagged(t, seq);
                        let appended = log.append_wait(bytes.clone()).expect("appends");
                        assert!(appended.tree_size.0 > appended.index.0);
                        let previous = acked.lock().expect("lock").insert(appended.index.0, bytes);
                        assert!(previous.is_none(), "index {} given twice", appended.index);
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().expect("thread");
        }
        assert_eq!(log.size(), TreeSize(64 * per_thread));
        // Group commit: many records per write and per sync.
        let stats = log.stats();
        assert_eq!(stats.records, 64 * per_thread);
        assert!(
            stats.syncs * 4 <= stats.records,
            "at least 4 records per sync on average: {stats:?}"
        );
    }
    let acked = acked.lock().expect("lock");
    let total = 64 * per_thread;
    assert_eq!(acked.len() as u64, total);
    assert!((0..total).all(|i| acked.contains_key(&i)), "dense from 0");
    let (log, recovery) = open(dir.path(), &signer);
    assert_eq!(recovery.size, TreeSize(total));
    for (index, bytes) in acked.iter() {
        assert_eq!(&log.read_record(LeafIndex(*index)).expect("read"), bytes);
    }
}

#[test]
fn sixty_four_appends_in_flight_from_one_thread_are_all_answered() {
    let dir = tempfile::tempdir().expect("tempdir");
    let signer = signer();
    let (log, _) = open(dir.path(), &signer);
    let (tx, rx) = mpsc::channel();
    let mut sent = 0u64;
    let mut answered = Vec::new();
    let total = 2000u64;
    while answered.len() < total as usize {
        while sent < total && sent - answered.len() as u64 <= 64 {
            let tx = tx.clone();
            let i = sent;
            log.append(bytes(i), move |r| {
                tx.send((i, r)).expect("send");
            });
            sent += 1;
        }
        let (i, r) = rx.recv().expect("an answer");
        let appended = r.expect("durable");
        answered.push((i, appended.index));
    }
    drop(log);
    let (log, _) = open(dir.path(), &signer);
    for (i, index) in answered {
        assert_eq!(log.read_record(index).expect("read"), bytes(i));
    }
}

#[test]
fn a_full_queue_refuses_with_busy_and_writes_nothing_for_it() {
    let dir = tempfile::tempdir().expect("tempdir");
    let signer = signer();
    let (log, _) = AuditLog::open(
        dir.path(),
        Options {
            queue_capacity: 1,
            ..options(&signer)
        },
    )
    .expect("opens");
    let (tx, rx) = mpsc::channel();
    for i in 0..500 {
        let tx = tx.clone();
        log.append(bytes(i), move |r| tx.send(r).expect("send"));
    }
    drop(tx);
    let results: Vec<_> = rx.iter().collect();
    assert_eq!(results.len(), 500, "every append is answered once");
    let busy = results
        .iter()
        .filter(|r| r.as_ref().is_err_and(|e| e.code() == "audit_busy"))
        .count();
    let ok = results.iter().filter(|r| r.is_ok()).count();
    assert_eq!(busy + ok, 500);
    assert!(busy > 0, "a queue of one fills up");
    drop(log);
    let (log, _) = open(dir.path(), &signer);
    assert_eq!(
        log.size(),
        TreeSize(ok as u64),
        "only what was acknowledged"
    );
}

#[test]
fn a_panicking_callback_does_not_stop_the_writer() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (log, _) = open(dir.path(), &signer());
    log.append(bytes(0), |_| panic!("a caller's bug"));
    assert_eq!(
        log.append_wait(bytes(1)).expect("still writing").index,
        LeafIndex(1)
    );
}

#[test]
fn with_a_commit_delay_concurrent_appends_share_larger_batches() {
    let dir = tempfile::tempdir().expect("tempdir");
    let signer = signer();
    let (log, _) = AuditLog::open(
        dir.path(),
        Options {
            commit_delay: std::time::Duration::from_millis(20),
            ..options(&signer)
        },
    )
    .expect("opens");
    let threads: Vec<_> = (0..8u64)
        .map(|t| {
            let log = log.clone();
            std::thread::spawn(move || {
                for seq in 0..25 {
                    log.append_wait(tagged(t, seq)).expect("appends");
                }
            })
        })
        .collect();
    for t in threads {
        t.join().expect("thread");
    }
    let stats = log.stats();
    assert_eq!(stats.records, 200);
    // Every batch after a shared one waits for the other threads' next records.
    assert!(
        stats.syncs * 6 <= stats.records,
        "at least 6 records per sync on average: {stats:?}"
    );
}

#[test]
fn appends_one_at_a_time_are_never_delayed() {
    let dir = tempfile::tempdir().expect("tempdir");
    let signer = signer();
    let (log, _) = AuditLog::open(
        dir.path(),
        Options {
            commit_delay: std::time::Duration::from_secs(30),
            ..options(&signer)
        },
    )
    .expect("opens");
    // A lone caller's batches hold one record each: the delay never applies. (Were it applied,
    // these appends would take minutes.)
    let started = std::time::Instant::now();
    for seq in 0..20 {
        log.append_wait(tagged(0, seq)).expect("appends");
    }
    assert!(started.elapsed() < std::time::Duration::from_secs(20));
    assert_eq!(log.stats().syncs, 20);
}
