//! A failed write or sync poisons the log: the batch fails, every later append fails with
//! `audit_unavailable`, `on_fatal` runs once, and nothing is acknowledged that is not durable.

mod common;

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use common::*;
use isnad_audit::{AuditLog, FatalError, LeafIndex, Options};

fn counting_hook() -> (Arc<AtomicUsize>, Arc<Mutex<Vec<FatalError>>>, Options) {
    let count = Arc::new(AtomicUsize::new(0));
    let seen: Arc<Mutex<Vec<FatalError>>> = Arc::default();
    let (c, s) = (count.clone(), seen.clone());
    let opts = Options {
        on_fatal: Some(Arc::new(move |e: &FatalError| {
            c.fetch_add(1, Ordering::SeqCst);
            s.lock().expect("lock").push(e.clone());
        })),
        ..Options::default()
    };
    (count, seen, opts)
}

#[test]
fn a_failed_sync_fails_its_batch_and_every_later_append() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (count, seen, opts) = counting_hook();
    let (log, _) = AuditLog::open(
        dir.path(),
        Options {
            fail_sync: Some(3),
            ..opts
        },
    )
    .expect("opens");
    assert_eq!(
        log.append_wait(bytes(0)).expect("first").index,
        LeafIndex(0)
    );
    assert_eq!(
        log.append_wait(bytes(1)).expect("second").index,
        LeafIndex(1)
    );
    let err = log.append_wait(bytes(2)).expect_err("the third sync fails");
    assert_eq!(err.code(), "audit_unavailable");
    assert!(log.is_poisoned());
    for i in 3..6 {
        let err = log.append_wait(bytes(i)).expect_err("poisoned");
        assert_eq!(err.code(), "audit_unavailable");
    }
    assert_eq!(count.load(Ordering::SeqCst), 1, "on_fatal once");
    let fatal = seen.lock().expect("lock")[0].clone();
    assert_eq!(fatal.code(), "audit_unavailable");
    assert!(fatal.what.contains("fdatasync"), "{fatal}");
    assert!(fatal.what.contains("00000000000000000000.seg"), "{fatal}");
    assert_eq!(log.size().0, 2, "the failed batch is not in the tree");
    drop(log);

    let (log, _) = AuditLog::open(dir.path(), Options::default()).expect("reopens");
    assert_eq!(log.read_record(LeafIndex(0)).expect("durable"), bytes(0));
    assert_eq!(log.read_record(LeafIndex(1)).expect("durable"), bytes(1));
    // The failed record may or may not have reached the disk (it was written, its sync failed);
    // it was never acknowledged, and the log goes on after whatever is there.
    assert!(log.size().0 == 2 || log.size().0 == 3);
}

#[test]
fn under_concurrent_load_only_durable_records_are_acknowledged() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (count, _, opts) = counting_hook();
    let acked: Arc<Mutex<HashMap<u64, Vec<u8>>>> = Arc::default();
    let failures = Arc::new(AtomicUsize::new(0));
    {
        let (log, _) = AuditLog::open(
            dir.path(),
            Options {
                fail_sync: Some(20),
                ..opts
            },
        )
        .expect("opens");
        let threads: Vec<_> = (0..32u64)
            .map(|t| {
                let (log, acked, failures) = (log.clone(), acked.clone(), failures.clone());
                std::thread::spawn(move || {
                    for seq in 0..30 {
                        let mut r = record(t * 100 + seq);
                        r.request_id = format!("t{t}-s{seq}");
                        let b = r.encode().expect("encodes");
                        match log.append_wait(b.clone()) {
                            Ok(a) => {
                                acked.lock().expect("lock").insert(a.index.0, b);
                            }
                            Err(e) => {
                                assert_eq!(e.code(), "audit_unavailable");
                                failures.fetch_add(1, Ordering::SeqCst);
                            }
                        }
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().expect("thread");
        }
    }
    assert_eq!(count.load(Ordering::SeqCst), 1, "on_fatal once");
    assert!(failures.load(Ordering::SeqCst) > 0);
    let acked = acked.lock().expect("lock");
    let (log, _) = AuditLog::open(dir.path(), Options::default()).expect("reopens");
    for (index, b) in acked.iter() {
        assert_eq!(&log.read_record(LeafIndex(*index)).expect("durable"), b);
    }
}
