//! The log as the gateway uses it: appends, reads, roots and proofs, across reopening.

mod common;

use common::*;
use isnad_audit::merkle::{leaf_hash, verify_consistency, verify_inclusion};
use isnad_audit::{AuditLog, LeafIndex, Options, Repair, TreeSize, verify_dir};

#[test]
fn an_appended_record_reads_back_byte_for_byte_after_a_reopen() {
    let dir = tempfile::tempdir().expect("tempdir");
    let signer = signer();
    {
        let (log, recovery) = open(dir.path(), &signer);
        assert_eq!(recovery.size, TreeSize(0));
        for i in 0..10 {
            let appended = log.append_wait(bytes(i)).expect("appends");
            assert_eq!(appended.index, LeafIndex(i));
            assert_eq!(appended.tree_size, TreeSize(i + 1));
        }
        assert_eq!(log.read_record(LeafIndex(3)).expect("read"), bytes(3));
    }
    let (log, recovery) = open(dir.path(), &signer);
    assert_eq!(recovery.size, TreeSize(10));
    assert_eq!(recovery.hashes, Repair::None);
    assert_eq!(recovery.torn, None);
    for i in 0..10 {
        assert_eq!(log.read_record(LeafIndex(i)).expect("read"), bytes(i));
    }
    assert_eq!(
        log.append_wait(bytes(10)).expect("appends").index,
        LeafIndex(10)
    );
    assert_eq!(
        log.read_record(LeafIndex(11)).expect_err("not yet").code(),
        "index_out_of_range"
    );
}

#[test]
fn the_root_and_proofs_verify_for_every_leaf_and_size() {
    let dir = tempfile::tempdir().expect("tempdir");
    let signer = signer();
    let (log, _) = AuditLog::open(
        dir.path(),
        Options {
            segment_size: 4096,
            ..options(&signer)
        },
    )
    .expect("opens");
    let n = 70;
    let mut roots = vec![];
    for i in 0..n {
        log.append_wait(bytes(i)).expect("appends");
        roots.push(log.root());
    }
    assert_eq!(log.root_at(TreeSize(n)).expect("root"), log.root());
    for size in 1..=n {
        assert_eq!(
            log.root_at(TreeSize(size)).expect("root"),
            roots[size as usize - 1]
        );
        for i in 0..size {
            let proof = log
                .inclusion_proof(LeafIndex(i), TreeSize(size))
                .expect("proof");
            verify_inclusion(
                LeafIndex(i),
                TreeSize(size),
                &leaf_hash(&bytes(i)),
                &proof,
                &roots[size as usize - 1],
            )
            .expect("inclusion verifies");
        }
        for old in 1..=size {
            let proof = log
                .consistency_proof(TreeSize(old), TreeSize(size))
                .expect("proof");
            verify_consistency(
                TreeSize(old),
                TreeSize(size),
                &roots[old as usize - 1],
                &roots[size as usize - 1],
                &proof,
            )
            .expect("consistency verifies");
        }
    }
    assert_eq!(
        log.inclusion_proof(LeafIndex(0), TreeSize(n + 1))
            .expect_err("beyond the log")
            .code(),
        "proof_bad_sizes"
    );
    assert!(segment_files(dir.path()).len() > 3, "small segments rotate");
}

#[test]
fn segments_rotate_at_the_size_limit_and_the_log_verifies() {
    let dir = tempfile::tempdir().expect("tempdir");
    let signer = signer();
    write_log(dir.path(), &signer, 50, 8);
    let files = segment_files(dir.path());
    assert_eq!(files.len(), 7, "50 records, 8 per segment");
    assert_eq!(file_name(&files[1]), "00000000000000000008.seg");
    let report = verify_dir(dir.path(), signer.verifier_key(), |_, _| {}).expect("verifies");
    assert_eq!(report.records, 50);
    assert_eq!(report.segments, 7);
    let (log, recovery) = open(dir.path(), &signer);
    assert_eq!(recovery.size, TreeSize(50));
    assert_eq!(report.root, log.root());
    assert_eq!(log.read_record(LeafIndex(17)).expect("read"), bytes(17));
}

#[test]
fn invalid_records_are_refused_before_they_are_queued() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (log, _) = open(dir.path(), &signer());
    let err = log
        .append_wait(b"not a record".to_vec())
        .expect_err("invalid");
    assert_eq!(err.code(), "audit_record_invalid");
    assert_eq!(log.size(), TreeSize(0));
}

#[test]
fn a_second_open_of_the_same_directory_is_refused() {
    let dir = tempfile::tempdir().expect("tempdir");
    let signer = signer();
    let (_log, _) = open(dir.path(), &signer);
    let err = AuditLog::open(dir.path(), options(&signer)).expect_err("locked");
    assert_eq!(err.code(), "log_locked");
}

#[test]
fn hash_and_offset_files_are_rebuilt_when_deleted() {
    let dir = tempfile::tempdir().expect("tempdir");
    let signer = signer();
    write_log(dir.path(), &signer, 40, 16);
    let root = {
        let (log, _) = open(dir.path(), &signer);
        log.root()
    };
    std::fs::remove_dir_all(dir.path().join("hashes")).expect("rm hashes");
    std::fs::remove_file(dir.path().join("offsets")).expect("rm offsets");
    let (log, recovery) = open(dir.path(), &signer);
    assert_eq!(recovery.hashes, Repair::Rebuilt);
    assert_eq!(recovery.offsets, Repair::Extended { from: LeafIndex(0) });
    assert_eq!(log.root(), root);
    assert_eq!(log.read_record(LeafIndex(39)).expect("read"), bytes(39));
}

#[test]
fn a_damaged_hash_file_is_rebuilt_from_the_records() {
    let dir = tempfile::tempdir().expect("tempdir");
    let signer = signer();
    write_log(dir.path(), &signer, 40, 16);
    let level1 = dir.path().join("hashes/level-01");
    let mut bytes_l1 = std::fs::read(&level1).expect("read");
    let last = bytes_l1.len() - 1;
    bytes_l1[last] ^= 1;
    std::fs::write(&level1, &bytes_l1).expect("write");
    let (log, recovery) = open(dir.path(), &signer);
    assert_eq!(recovery.hashes, Repair::Rebuilt);
    let report = verify_dir(dir.path(), signer.verifier_key(), |_, _| {}).expect("verifies");
    assert_eq!(log.root(), report.root);
}

#[test]
fn hash_files_that_lag_behind_are_completed() {
    let dir = tempfile::tempdir().expect("tempdir");
    let signer = signer();
    write_log(dir.path(), &signer, 40, 100);
    // As after a crash: the last records' hashes never reached the disk.
    for (level, keep) in [(0, 30u64), (1, 15), (2, 7), (3, 3), (4, 1), (5, 0)] {
        let f = std::fs::OpenOptions::new()
            .write(true)
            .open(dir.path().join(format!("hashes/level-{level:02}")))
            .expect("open");
        f.set_len(keep * 32).expect("cut");
    }
    let (log, recovery) = open(dir.path(), &signer);
    assert_eq!(
        recovery.hashes,
        Repair::Extended {
            from: LeafIndex(30)
        }
    );
    let report = verify_dir(dir.path(), signer.verifier_key(), |_, _| {}).expect("verifies");
    assert_eq!(log.root(), report.root);
}

#[test]
fn the_log_is_send_sync_and_cheap_to_clone() {
    fn shared<T: Send + Sync + Clone + 'static>() {}
    shared::<AuditLog>();
    let dir = tempfile::tempdir().expect("tempdir");
    let signer = signer();
    let (log, _) = open(dir.path(), &signer);
    let clone = log.clone();
    let appended = std::thread::spawn(move || clone.append_wait(bytes(0)).expect("appends"))
        .join()
        .expect("thread");
    assert_eq!(log.size(), appended.tree_size);
}
