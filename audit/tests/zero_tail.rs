//! The zero tail: the writer keeps the last segment extended with zeros ahead of its records, so
//! that a batch's sync has no metadata to write. The records of the last segment end where only
//! zeros follow; every reader agrees on that; a segment is cut to its last frame before the next
//! one starts, and at a clean close; zeros anywhere else, or followed by data, are damage.

mod common;

use std::io::Write;
use std::path::{Path, PathBuf};

use common::*;
use isnad_audit::segment::{
    FRAME_HEADER_LEN, HEADER_LEN, SegmentRole, encode_frame, scan_segment_bytes,
};
use isnad_audit::{AuditLog, Export, LeafIndex, Options, PREALLOCATE, TreeSize, verify_dir};

fn last_segment(dir: &Path) -> PathBuf {
    segment_files(dir).pop().expect("a segment")
}

fn len(path: &Path) -> u64 {
    std::fs::metadata(path).expect("meta").len()
}

/// Where the frames of a segment file end (reading lengths up to a zero one or the end).
fn records_end(path: &Path) -> u64 {
    let b = std::fs::read(path).expect("read");
    let mut at = HEADER_LEN;
    while at + 4 <= b.len() {
        let n = u32::from_le_bytes(b[at..at + 4].try_into().expect("4 bytes")) as usize;
        if n == 0 {
            break;
        }
        at += FRAME_HEADER_LEN + n;
    }
    at as u64
}

fn append_raw(path: &Path, bytes: &[u8]) {
    let mut f = std::fs::OpenOptions::new()
        .append(true)
        .open(path)
        .expect("open");
    f.write_all(bytes).expect("write");
}

fn frame(index: u64) -> Vec<u8> {
    let mut out = Vec::new();
    encode_frame(LeafIndex(index), &bytes(index), &mut out);
    out
}

fn torn_files(dir: &Path) -> usize {
    std::fs::read_dir(dir.join("torn")).expect("torn").count()
}

#[test]
fn the_last_segment_is_kept_ahead_in_zeros_that_later_batches_write_into() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (log, _) = open(dir.path(), &signer());
    log.append_wait(bytes(0)).expect("appends");
    let path = last_segment(dir.path());
    assert_eq!(len(&path), PREALLOCATE, "one chunk of zeros ahead");
    let end = records_end(&path);
    assert_eq!(end, (HEADER_LEN + frame(0).len()) as u64);
    let b = std::fs::read(&path).expect("read");
    assert!(b[end as usize..].iter().all(|&x| x == 0), "written zeros");
    for i in 1..100 {
        log.append_wait(bytes(i)).expect("appends");
    }
    assert_eq!(len(&path), PREALLOCATE, "the batches wrote inside the file");
    assert_eq!(log.read_record(LeafIndex(99)).expect("read"), bytes(99));
}

#[test]
fn a_clean_close_cuts_the_zero_tail_and_the_next_open_extends_again() {
    let dir = tempfile::tempdir().expect("tempdir");
    let signer = signer();
    {
        let (log, _) = open(dir.path(), &signer);
        for i in 0..10 {
            log.append_wait(bytes(i)).expect("appends");
        }
        log.checkpoint_now().expect("checkpoint");
    }
    let path = last_segment(dir.path());
    assert_eq!(len(&path), records_end(&path), "exact after a clean close");
    let (log, recovery) = open(dir.path(), &signer);
    assert_eq!((recovery.size, recovery.torn), (TreeSize(10), None));
    log.append_wait(bytes(10)).expect("appends");
    assert_eq!(len(&path), PREALLOCATE);
}

#[test]
fn a_log_stopped_with_a_zero_tail_loses_nothing_and_the_writer_reuses_the_tail() {
    // What a killed writer leaves: its records, then the zeros it wrote ahead of them.
    let dir = tempfile::tempdir().expect("tempdir");
    let signer = signer();
    write_log(dir.path(), &signer, 10, 100);
    let path = last_segment(dir.path());
    let end = len(&path);
    append_raw(&path, &vec![0u8; 100_000]);
    let (log, recovery) = open(dir.path(), &signer);
    assert_eq!(recovery.size, TreeSize(10));
    assert_eq!(
        recovery.torn, None,
        "a zero tail is a clean end: nothing set aside"
    );
    assert_eq!(torn_files(dir.path()), 0);
    assert_eq!(len(&path), end + 100_000, "open changes nothing");
    for i in 10..20 {
        assert_eq!(
            log.append_wait(bytes(i)).expect("appends").index,
            LeafIndex(i)
        );
    }
    assert_eq!(len(&path), end + 100_000, "the records went into the zeros");
    assert_eq!(
        std::fs::read(&path).expect("read")[end as usize..][..frame(10).len()],
        frame(10)[..],
        "right after the last record"
    );
    drop(log);
    let report = verify_dir(dir.path(), signer.verifier_key(), |_, _| {}).expect("verifies");
    assert_eq!(report.records, 20);
}

#[test]
fn a_torn_frame_followed_by_zeros_is_set_aside_and_the_log_opens() {
    for cut in [8usize, 16, 300] {
        let dir = tempfile::tempdir().expect("tempdir");
        let signer = signer();
        write_log(dir.path(), &signer, 10, 100);
        let path = last_segment(dir.path());
        let end = len(&path);
        let whole = frame(10);
        let mut tail = whole[..cut].to_vec();
        tail.resize(4096, 0);
        append_raw(&path, &tail);
        let (log, recovery) = open(dir.path(), &signer);
        assert_eq!(recovery.size, TreeSize(10), "cut at {cut}");
        let torn = recovery.torn.expect("a torn tail");
        assert_eq!((torn.offset, torn.code), (end, "bad_crc"), "cut at {cut}");
        // The frame as far as its length reaches; the zeros after it are not kept.
        assert_eq!(torn.bytes, whole.len() as u64);
        assert_eq!(
            std::fs::read(&torn.saved_to).expect("saved"),
            tail[..whole.len()]
        );
        assert_eq!(len(&path), end, "cut where the torn frame started");
        assert_eq!(
            log.append_wait(bytes(10)).expect("appends").index,
            LeafIndex(10)
        );
        drop(log);
        let report = verify_dir(dir.path(), signer.verifier_key(), |_, _| {}).expect("verifies");
        assert_eq!(report.records, 11);
    }
}

#[test]
fn a_torn_frame_then_zeros_then_more_bytes_is_damage_and_nothing_is_cut() {
    let dir = tempfile::tempdir().expect("tempdir");
    let signer = signer();
    write_log(dir.path(), &signer, 10, 100);
    let path = last_segment(dir.path());
    let end = len(&path);
    let mut tail = frame(10)[..300].to_vec();
    tail.resize(2000, 0);
    tail.push(7);
    append_raw(&path, &tail);
    let before = std::fs::read(&path).expect("read");
    let err = AuditLog::open(dir.path(), options(&signer)).expect_err("refused");
    assert_eq!(err.code(), "bad_crc");
    assert!(err.to_string().contains(&format!("byte {end}")), "{err}");
    assert_eq!(std::fs::read(&path).expect("read"), before, "untouched");
    assert_eq!(torn_files(dir.path()), 0);
}

#[test]
fn zeros_followed_by_a_record_are_refused_naming_the_offsets() {
    let dir = tempfile::tempdir().expect("tempdir");
    let signer = signer();
    write_log(dir.path(), &signer, 10, 100);
    let path = last_segment(dir.path());
    let end = len(&path);
    let mut tail = vec![0u8; 64];
    tail.extend_from_slice(&frame(10));
    append_raw(&path, &tail);
    let before = std::fs::read(&path).expect("read");

    let err = AuditLog::open(dir.path(), options(&signer)).expect_err("refused");
    assert_eq!(err.code(), "data_after_zeros");
    let text = err.to_string();
    assert!(text.contains(&file_name(&path)), "{text}");
    assert!(
        text.contains(&format!("byte {end}")),
        "where the zeros start: {text}"
    );
    assert!(
        text.contains(&format!("byte {}", end + 64)),
        "where data starts: {text}"
    );
    assert_eq!(std::fs::read(&path).expect("read"), before, "untouched");
    assert_eq!(torn_files(dir.path()), 0);

    let e = verify_dir(dir.path(), signer.verifier_key(), |_, _| {}).expect_err("damage");
    assert_eq!((e.code(), e.to_string()), ("data_after_zeros", text));
    let last = Export::open(dir.path(), LeafIndex(0), None)
        .expect("opens")
        .last()
        .expect("items");
    assert_eq!(
        last.expect_err("ends with the damage").code(),
        "data_after_zeros"
    );
}

#[test]
fn zeros_followed_by_bytes_that_are_no_frame_are_refused_too() {
    let dir = tempfile::tempdir().expect("tempdir");
    let signer = signer();
    write_log(dir.path(), &signer, 10, 100);
    let path = last_segment(dir.path());
    let mut tail = vec![0u8; 4096];
    tail.extend_from_slice(&frame(10)[100..300]);
    append_raw(&path, &tail);
    let err = AuditLog::open(dir.path(), options(&signer)).expect_err("refused");
    assert_eq!(err.code(), "data_after_zeros");
    assert_eq!(torn_files(dir.path()), 0);
}

#[test]
fn a_sealed_segment_with_a_zero_tail_is_refused() {
    let dir = tempfile::tempdir().expect("tempdir");
    let signer = signer();
    write_log(dir.path(), &signer, 50, 8);
    let sealed = segment_files(dir.path())[2].clone();
    let end = len(&sealed);
    append_raw(&sealed, &[0u8; 1000]);
    let before = std::fs::read(&sealed).expect("read");

    let err = AuditLog::open(dir.path(), options(&signer)).expect_err("refused");
    assert_eq!(err.code(), "zero_tail_not_last");
    let text = err.to_string();
    assert!(
        text.contains(&file_name(&sealed)) && text.contains(&format!("byte {end}")),
        "{text}"
    );
    assert_eq!(std::fs::read(&sealed).expect("read"), before, "untouched");

    let e = verify_dir(dir.path(), signer.verifier_key(), |_, _| {}).expect_err("damage");
    assert_eq!((e.code(), e.to_string()), ("zero_tail_not_last", text));
    let items: Vec<_> = Export::open(dir.path(), LeafIndex(0), None)
        .expect("opens")
        .collect();
    assert_eq!(items.len(), 25, "24 records, then the damage");
    assert_eq!(
        items[24].as_ref().expect_err("damage").code(),
        "zero_tail_not_last"
    );
}

#[test]
fn zeros_in_the_middle_of_a_segment_are_refused() {
    let dir = tempfile::tempdir().expect("tempdir");
    let signer = signer();
    write_log(dir.path(), &signer, 50, 8);
    for n in [2usize, 6] {
        let path = segment_files(dir.path())[n].clone();
        let original = std::fs::read(&path).expect("read");
        // The first record of the segment becomes zeros.
        let mut b = original.clone();
        let first = HEADER_LEN..HEADER_LEN + frame(0).len();
        b[first].fill(0);
        std::fs::write(&path, &b).expect("write");
        let err = AuditLog::open(dir.path(), options(&signer)).expect_err("refused");
        assert_eq!(err.code(), "data_after_zeros", "segment {n}");
        assert!(
            err.to_string().contains(&format!("byte {HEADER_LEN}")),
            "{err}"
        );
        let e = verify_dir(dir.path(), signer.verifier_key(), |_, _| {}).expect_err("damage");
        assert_eq!(e.code(), "data_after_zeros");
        std::fs::write(&path, &original).expect("restore");
    }
}

#[test]
fn rotation_cuts_the_finished_segment_to_its_last_frame() {
    let dir = tempfile::tempdir().expect("tempdir");
    let signer = signer();
    let limit = 64 * 1024;
    let (log, _) = AuditLog::open(
        dir.path(),
        Options {
            segment_size: limit,
            ..options(&signer)
        },
    )
    .expect("opens");
    for i in 0..400 {
        log.append_wait(bytes(i)).expect("appends");
    }
    let files = segment_files(dir.path());
    assert!(files.len() >= 3, "rotated: {}", files.len());
    let (last, sealed) = files.split_last().expect("segments");
    for path in sealed {
        assert_eq!(len(path), records_end(path), "{}", file_name(path));
        assert!(len(path) <= limit);
    }
    assert_eq!(
        len(last),
        limit,
        "zeros ahead, up to the segment limit and no further"
    );
    assert!(records_end(last) < limit);
}

#[test]
fn the_verifier_and_export_stop_at_the_zero_tail_and_agree_with_the_log() {
    for segment_size in [Options::default().segment_size, 24 * 1024] {
        let dir = tempfile::tempdir().expect("tempdir");
        let signer = signer();
        let (log, _) = AuditLog::open(
            dir.path(),
            Options {
                segment_size,
                ..options(&signer)
            },
        )
        .expect("opens");
        for i in 0..100 {
            log.append_wait(bytes(i)).expect("appends");
        }
        log.checkpoint_now().expect("checkpoint");
        // The log is open: its last segment ends in zeros.
        let last = last_segment(dir.path());
        assert!(len(&last) > records_end(&last));
        let report = verify_dir(dir.path(), signer.verifier_key(), |_, _| {}).expect("verifies");
        assert_eq!(report.records, 100);
        assert_eq!(report.root, log.root());
        let records: u64 = segment_files(dir.path())
            .iter()
            .map(|p| records_end(p))
            .sum();
        assert_eq!(report.bytes, records, "the zero tail is not counted");
        let exported: Vec<_> = Export::open(dir.path(), LeafIndex(0), None)
            .expect("opens")
            .collect::<Result<_, _>>()
            .expect("reads");
        assert_eq!(exported.len(), 100);
        for item in &exported {
            assert_eq!(item.bytes, log.read_record(item.index).expect("read"));
        }
        let summary = scan_segment_bytes(
            "last.seg",
            &std::fs::read(&last).expect("read"),
            SegmentRole::Last,
        )
        .expect("scans");
        assert_eq!(summary.bytes, records_end(&last));
        assert_eq!(summary.bytes + summary.zero_tail, len(&last));
    }
}

#[test]
fn a_log_written_without_preallocation_opens_and_verifies_unchanged() {
    // Segments that end at their last frame, as every log written before preallocation.
    let dir = tempfile::tempdir().expect("tempdir");
    let signer = signer();
    let root = {
        let (log, _) = AuditLog::open(
            dir.path(),
            Options {
                preallocate: 0,
                segment_size: 16 * 1024,
                ..options(&signer)
            },
        )
        .expect("opens");
        for i in 0..100 {
            log.append_wait(bytes(i)).expect("appends");
            let last = last_segment(dir.path());
            assert_eq!(len(&last), records_end(&last), "grows with each batch");
        }
        log.checkpoint_now().expect("checkpoint");
        log.root()
    };
    let files: Vec<Vec<u8>> = segment_files(dir.path())
        .iter()
        .map(|p| std::fs::read(p).expect("read"))
        .collect();
    let report = verify_dir(dir.path(), signer.verifier_key(), |_, _| {}).expect("verifies");
    assert_eq!((report.records, report.root), (100, root));
    let (log, recovery) = open(dir.path(), &signer);
    assert_eq!((recovery.size, recovery.torn), (TreeSize(100), None));
    assert_eq!(log.root(), root);
    drop(log);
    let after: Vec<Vec<u8>> = segment_files(dir.path())
        .iter()
        .map(|p| std::fs::read(p).expect("read"))
        .collect();
    assert_eq!(after, files, "opening and closing changed no byte");
}

#[test]
fn a_poisoned_log_keeps_its_zero_tail() {
    // After a failed sync the log's files are not written again, not even to cut the tail.
    let dir = tempfile::tempdir().expect("tempdir");
    {
        let (log, _) = AuditLog::open(
            dir.path(),
            Options {
                fail_sync: Some(2),
                ..Options::default()
            },
        )
        .expect("opens");
        log.append_wait(bytes(0)).expect("first");
        log.append_wait(bytes(1))
            .expect_err("the second sync fails");
    }
    let path = last_segment(dir.path());
    assert_eq!(len(&path), PREALLOCATE);
    let (log, recovery) = AuditLog::open(dir.path(), Options::default()).expect("reopens");
    assert!(recovery.size.0 == 1 || recovery.size.0 == 2);
    assert_eq!(log.read_record(LeafIndex(0)).expect("durable"), bytes(0));
}

#[test]
fn in_memory_a_zero_tail_ends_the_last_segment_and_refuses_a_sealed_one() {
    let mut seg = isnad_audit::segment::encode_header(LeafIndex(0)).to_vec();
    seg.extend_from_slice(&frame(0));
    let end = seg.len() as u64;
    for tail in [1usize, 3, 4, 15, 16, 5000] {
        let mut b = seg.clone();
        b.resize(seg.len() + tail, 0);
        let s = scan_segment_bytes("s.seg", &b, SegmentRole::Last).expect("a clean end");
        assert_eq!((s.records, s.bytes, s.zero_tail), (1, end, tail as u64));
        let e = scan_segment_bytes("s.seg", &b, SegmentRole::Sealed).expect_err("sealed");
        assert_eq!((e.code(), e.offset), ("zero_tail_not_last", end));
    }
    let s = scan_segment_bytes("s.seg", &seg, SegmentRole::Sealed).expect("exact");
    assert_eq!((s.records, s.zero_tail), (1, 0));
}
