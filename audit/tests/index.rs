//! The query index: every key kind and time range returns exactly the matching records, after a
//! reopen, and after the index files are deleted (rebuilt from the segments).

mod common;

use std::path::Path;

use common::*;
use isnad_audit::{AuditLog, AuditRecord, LeafIndex, Query};

const N: u64 = 300;

fn expected(f: impl Fn(&AuditRecord) -> bool) -> Vec<LeafIndex> {
    (0..N).filter(|&i| f(&record(i))).map(LeafIndex).collect()
}

/// Every single-key query over the values the records use, and a few combinations.
fn check_all_queries(log: &AuditLog) {
    for n in 0..7 {
        let q = Query {
            subject: Some(subject(n)),
            ..Query::default()
        };
        assert_eq!(
            log.query(&q).expect("query"),
            expected(|r| r.subject == subject(n)),
            "subject {n}"
        );
    }
    let texts = |pick: fn(&AuditRecord) -> &String| {
        let mut v: Vec<String> = (0..N).map(|i| pick(&record(i)).clone()).collect();
        v.sort();
        v.dedup();
        v
    };
    for consumer in texts(|r| &r.consumer) {
        let q = Query {
            consumer: Some(consumer.clone()),
            ..Query::default()
        };
        assert_eq!(
            log.query(&q).expect("q"),
            expected(|r| r.consumer == consumer)
        );
    }
    for provider in texts(|r| &r.provider) {
        let q = Query {
            provider: Some(provider.clone()),
            ..Query::default()
        };
        assert_eq!(
            log.query(&q).expect("q"),
            expected(|r| r.provider == provider)
        );
    }
    for dataset in texts(|r| &r.dataset) {
        let q = Query {
            dataset: Some(dataset.clone()),
            ..Query::default()
        };
        assert_eq!(
            log.query(&q).expect("q"),
            expected(|r| r.dataset == dataset)
        );
    }
    for purpose in texts(|r| &r.purpose) {
        let q = Query {
            purpose: Some(purpose.clone()),
            ..Query::default()
        };
        assert_eq!(
            log.query(&q).expect("q"),
            expected(|r| r.purpose == purpose)
        );
    }
    // Time range alone: records 50..120 (1 ms apart), half open.
    let (since, until) = (T0 + 50 * 1_000_000, T0 + 120 * 1_000_000);
    let q = Query {
        since: Some(since),
        until: Some(until),
        ..Query::default()
    };
    assert_eq!(
        log.query(&q).expect("q"),
        (50..120).map(LeafIndex).collect::<Vec<_>>()
    );
    // A combination: a subject seen by one consumer for one purpose in the range.
    let q = Query {
        subject: Some(subject(3)),
        consumer: Some("health-authority".into()),
        since: Some(since),
        until: Some(T0 + 250 * 1_000_000),
        ..Query::default()
    };
    assert_eq!(
        log.query(&q).expect("q"),
        expected(|r| r.subject == subject(3)
            && r.consumer == "health-authority"
            && r.time >= since
            && r.time < T0 + 250 * 1_000_000)
    );
    // Nothing matches an unknown key.
    let q = Query {
        dataset: Some("no.such.dataset".into()),
        ..Query::default()
    };
    assert!(log.query(&q).expect("q").is_empty());
}

fn write(dir: &Path) {
    let signer = signer();
    write_log(dir, &signer, N, 64);
}

#[test]
fn queries_return_exactly_the_matching_records() {
    let dir = tempfile::tempdir().expect("tempdir");
    let signer = signer();
    let (log, _) = open(dir.path(), &signer);
    for i in 0..N {
        log.append_wait(bytes(i)).expect("appends");
        if i == 150 {
            // A record is found as soon as it is acknowledged.
            let q = Query {
                consumer: Some(record(150).consumer),
                after: Some(LeafIndex(140)),
                ..Query::default()
            };
            assert_eq!(log.query(&q).expect("q").last(), Some(&LeafIndex(150)));
        }
    }
    check_all_queries(&log);
}

#[test]
fn queries_are_the_same_after_a_reopen() {
    let dir = tempfile::tempdir().expect("tempdir");
    write(dir.path());
    let (log, _) =
        isnad_audit::AuditLog::open(dir.path(), isnad_audit::Options::default()).expect("opens");
    check_all_queries(&log);
}

#[test]
fn deleted_index_files_are_rebuilt_from_the_segments() {
    let dir = tempfile::tempdir().expect("tempdir");
    write(dir.path());
    std::fs::remove_dir_all(dir.path().join("index")).expect("rm index");
    let (log, _) =
        isnad_audit::AuditLog::open(dir.path(), isnad_audit::Options::default()).expect("opens");
    check_all_queries(&log);
}

#[test]
fn an_index_without_its_sync_point_is_rebuilt_not_trusted() {
    let dir = tempfile::tempdir().expect("tempdir");
    write(dir.path());
    // As after a crash before the sync point was written: entries on disk, position lost.
    std::fs::remove_file(dir.path().join("index/position")).expect("rm position");
    let (log, _) =
        isnad_audit::AuditLog::open(dir.path(), isnad_audit::Options::default()).expect("opens");
    check_all_queries(&log);
    // And with a torn bucket entry (a crash in the middle of a write).
    drop(log);
    let bucket = std::fs::read_dir(dir.path().join("index/consumer"))
        .expect("dir")
        .map(|e| e.expect("entry").path())
        .find(|p| std::fs::metadata(p).expect("meta").len() > 0)
        .expect("a bucket with entries");
    let mut f = std::fs::OpenOptions::new()
        .append(true)
        .open(&bucket)
        .expect("open");
    std::io::Write::write_all(&mut f, &[0xFF; 7]).expect("write");
    drop(f);
    let (log, _) =
        isnad_audit::AuditLog::open(dir.path(), isnad_audit::Options::default()).expect("opens");
    check_all_queries(&log);
}

#[test]
fn entries_past_an_older_sync_point_are_cut_and_indexed_again() {
    let dir = tempfile::tempdir().expect("tempdir");
    write(dir.path());
    // As after a crash between writing bucket entries and moving the sync point: every bucket
    // holds entries past it (kept, they would be found twice once indexed again), some none.
    for position in [N / 2, 1] {
        std::fs::write(dir.path().join("index/position"), position.to_le_bytes())
            .expect("write position");
        let (log, _) = isnad_audit::AuditLog::open(dir.path(), isnad_audit::Options::default())
            .expect("opens");
        check_all_queries(&log);
    }
}

#[test]
fn paging_with_limit_and_after_walks_the_results_in_order() {
    let dir = tempfile::tempdir().expect("tempdir");
    write(dir.path());
    let (log, _) =
        isnad_audit::AuditLog::open(dir.path(), isnad_audit::Options::default()).expect("opens");
    let all = expected(|r| r.provider == "civil-registry");
    let mut pages = vec![];
    let mut after = None;
    loop {
        let page = log
            .query(&Query {
                provider: Some("civil-registry".into()),
                limit: 7,
                after,
                ..Query::default()
            })
            .expect("q");
        if page.is_empty() {
            break;
        }
        assert!(page.len() <= 7);
        after = page.last().copied();
        pages.extend(page);
    }
    assert_eq!(pages, all);
    let first_ten = log
        .query(&Query {
            limit: 10,
            ..Query::default()
        })
        .expect("q");
    assert_eq!(first_ten, (0..10).map(LeafIndex).collect::<Vec<_>>());
}
