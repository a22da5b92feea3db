//! Crash recovery: a torn last record is set aside and cut, the log goes on at the right index
//! and verifies; cutting never happens to a log that is refused.

mod common;

use std::io::Write;
use std::path::Path;

use common::*;
use isnad_audit::segment::encode_frame;
use isnad_audit::{LeafIndex, TreeSize, verify_dir};

fn last_segment(dir: &Path) -> std::path::PathBuf {
    segment_files(dir).pop().expect("a segment")
}

fn append_raw(dir: &Path, bytes: &[u8]) {
    let mut f = std::fs::OpenOptions::new()
        .append(true)
        .open(last_segment(dir))
        .expect("open");
    f.write_all(bytes).expect("write");
}

fn frame(index: u64) -> Vec<u8> {
    let mut out = Vec::new();
    encode_frame(LeafIndex(index), &bytes(index), &mut out);
    out
}

/// Writes 10 records (checkpointed), adds `torn` to the last segment, reopens, and checks the
/// recovery: torn bytes saved aside, log at 10, next append at 10, verifies.
fn recovers_from(torn: &[u8], expected_code: &str) {
    let dir = tempfile::tempdir().expect("tempdir");
    let signer = signer();
    write_log(dir.path(), &signer, 10, 100);
    let before = std::fs::metadata(last_segment(dir.path()))
        .expect("meta")
        .len();
    append_raw(dir.path(), torn);
    let (log, recovery) = open(dir.path(), &signer);
    assert_eq!(recovery.size, TreeSize(10));
    let tail = recovery.torn.expect("a torn tail");
    assert_eq!(tail.code, expected_code);
    assert_eq!(tail.offset, before);
    assert_eq!(tail.segment, "00000000000000000000.seg");
    assert_eq!(std::fs::read(&tail.saved_to).expect("saved"), torn);
    assert!(tail.saved_to.starts_with(dir.path().join("torn")));
    assert_eq!(
        std::fs::metadata(last_segment(dir.path()))
            .expect("meta")
            .len(),
        before,
        "cut back to the last good frame"
    );
    assert_eq!(
        log.append_wait(bytes(10)).expect("appends").index,
        LeafIndex(10)
    );
    assert_eq!(
        log.append_wait(bytes(11)).expect("appends").index,
        LeafIndex(11)
    );
    log.checkpoint_now().expect("checkpoint");
    drop(log);
    let report = verify_dir(dir.path(), signer.verifier_key(), |_, _| {}).expect("verifies");
    assert_eq!(report.records, 12);
    let (log, recovery) = open(dir.path(), &signer);
    assert_eq!(recovery.torn, None, "nothing torn any more");
    assert_eq!(log.read_record(LeafIndex(11)).expect("read"), bytes(11));
}

#[test]
fn half_a_frame_header_at_the_end_is_torn() {
    recovers_from(&frame(10)[..8], "truncated");
}

#[test]
fn half_a_payload_at_the_end_is_torn() {
    let f = frame(10);
    recovers_from(&f[..16 + (f.len() - 16) / 2], "truncated");
}

#[test]
fn a_whole_last_frame_with_a_bad_crc_is_torn() {
    let mut f = frame(10);
    let last = f.len() - 1;
    f[last] ^= 0x40;
    recovers_from(&f, "bad_crc");
}

#[test]
fn a_zero_filled_tail_is_a_clean_end_not_a_tear() {
    // Zeros after the last record are the tail the writer keeps ahead of its records (before
    // preallocation they were set aside as torn, `bad_length`): nothing is set aside or cut.
    let dir = tempfile::tempdir().expect("tempdir");
    let signer = signer();
    write_log(dir.path(), &signer, 10, 100);
    append_raw(dir.path(), &[0u8; 4096]);
    let before = std::fs::read(last_segment(dir.path())).expect("read");
    let (log, recovery) = open(dir.path(), &signer);
    assert_eq!((recovery.size, recovery.torn), (TreeSize(10), None));
    assert_eq!(
        std::fs::read(last_segment(dir.path())).expect("read"),
        before,
        "untouched"
    );
    assert_eq!(
        log.append_wait(bytes(10)).expect("appends").index,
        LeafIndex(10)
    );
}

#[test]
fn a_good_frame_then_a_torn_one_keeps_the_good_one() {
    let dir = tempfile::tempdir().expect("tempdir");
    let signer = signer();
    write_log(dir.path(), &signer, 10, 100);
    let mut tail = frame(10);
    tail.extend_from_slice(&frame(11)[..20]);
    append_raw(dir.path(), &tail);
    let (log, recovery) = open(dir.path(), &signer);
    assert_eq!(recovery.size, TreeSize(11), "the whole frame 10 survives");
    assert_eq!(log.read_record(LeafIndex(10)).expect("read"), bytes(10));
}

#[test]
fn a_new_segment_with_a_torn_header_is_removed() {
    let dir = tempfile::tempdir().expect("tempdir");
    let signer = signer();
    write_log(dir.path(), &signer, 10, 100);
    let name = dir.path().join("segments/00000000000000000010.seg");
    std::fs::write(
        &name,
        &isnad_audit::segment::encode_header(LeafIndex(10))[..10],
    )
    .expect("write");
    let (log, recovery) = open(dir.path(), &signer);
    assert_eq!(recovery.size, TreeSize(10));
    let tail = recovery.torn.expect("torn");
    assert_eq!((tail.offset, tail.bytes), (0, 10));
    assert!(!name.exists(), "the empty segment is gone");
    assert_eq!(
        log.append_wait(bytes(10)).expect("appends").index,
        LeafIndex(10)
    );
}

#[test]
fn a_bad_crc_with_a_valid_frame_after_it_is_damage_not_a_tear() {
    let dir = tempfile::tempdir().expect("tempdir");
    let signer = signer();
    write_log(dir.path(), &signer, 10, 100);
    let mut bad = frame(10);
    bad[20] ^= 1;
    bad.extend_from_slice(&frame(11));
    append_raw(dir.path(), &bad);
    let before = std::fs::read(last_segment(dir.path())).expect("read");
    let err = isnad_audit::AuditLog::open(dir.path(), options(&signer)).expect_err("refused");
    assert_eq!(err.code(), "bad_crc");
    assert_eq!(
        std::fs::read(last_segment(dir.path())).expect("read"),
        before,
        "untouched"
    );
}

#[test]
fn a_tear_inside_the_signed_tree_refuses_and_cuts_nothing() {
    let dir = tempfile::tempdir().expect("tempdir");
    let signer = signer();
    write_log(dir.path(), &signer, 10, 100);
    // The last (checkpointed) record loses its last byte.
    let path = last_segment(dir.path());
    let before = std::fs::read(&path).expect("read");
    std::fs::write(&path, &before[..before.len() - 1]).expect("write");
    let err = isnad_audit::AuditLog::open(dir.path(), options(&signer)).expect_err("refused");
    assert_eq!(err.code(), "log_shorter_than_checkpoint");
    assert_eq!(
        std::fs::read(&path).expect("read").len(),
        before.len() - 1,
        "nothing cut"
    );
    assert_eq!(
        std::fs::read_dir(dir.path().join("torn"))
            .expect("dir")
            .count(),
        0
    );
}

/// Run as a child process by the test below: appends from 8 threads until killed, printing
/// every acknowledgement.
fn append_until_killed(dir: &Path) {
    use std::io::Write as _;
    let (log, _) = isnad_audit::AuditLog::open(
        dir,
        isnad_audit::Options {
            segment_size: 256 * 1024,
            ..isnad_audit::Options::default()
        },
    )
    .expect("child opens");
    let out = std::sync::Arc::new(std::sync::Mutex::new(std::io::stdout()));
    let threads: Vec<_> = (0..8u64)
        .map(|t| {
            let (log, out) = (log.clone(), out.clone());
            std::thread::spawn(move || {
                for seq in 0.. {
                    let i = t * 1_000_000 + seq;
                    let appended = log.append_wait(bytes(i)).expect("child appends");
                    let mut out = out.lock().expect("lock");
                    writeln!(out, "acked {} {i}", appended.index).expect("stdout");
                    out.flush().expect("flush");
                }
            })
        })
        .collect();
    for t in threads {
        let _ = t.join();
    }
}

#[test]
fn a_killed_writer_loses_no_acknowledged_record() {
    use std::io::BufRead as _;
    if let Some(dir) = std::env::var_os("ISNAD_AUDIT_KILL_CHILD") {
        append_until_killed(Path::new(&dir));
        return;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let mut acked: Vec<(u64, u64)> = Vec::new();
    let mut zero_tails = 0;
    for round in 0..3 {
        let mut child = std::process::Command::new(std::env::current_exe().expect("exe"))
            .args([
                "--exact",
                "a_killed_writer_loses_no_acknowledged_record",
                "--nocapture",
                "--test-threads=1",
            ])
            .env("ISNAD_AUDIT_KILL_CHILD", dir.path())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("child");
        let stdout = child.stdout.take().expect("stdout");
        let mut lines = std::io::BufReader::new(stdout).lines();
        let mut this_round = 0;
        // Kill it in the middle of its work, at a different point each round.
        while this_round < 300 + round * 250 {
            let line = lines.next().expect("a line").expect("utf-8");
            if let Some(rest) = line.strip_prefix("acked ") {
                let (index, i) = rest.split_once(' ').expect("two numbers");
                acked.push((index.parse().expect("index"), i.parse().expect("i")));
                this_round += 1;
            }
        }
        child.kill().expect("SIGKILL");
        // Acknowledgements printed before the kill landed still count.
        for line in lines.map_while(Result::ok) {
            if let Some(rest) = line.strip_prefix("acked ") {
                let (index, i) = rest.split_once(' ').expect("two numbers");
                acked.push((index.parse().expect("index"), i.parse().expect("i")));
            }
        }
        child.wait().expect("reaped");
        // The writer keeps the last segment extended with zeros ahead of its records.
        let last = last_segment(dir.path());
        if std::fs::read(&last).expect("read").last() == Some(&0) {
            zero_tails += 1;
        }

        let (log, recovery) =
            isnad_audit::AuditLog::open(dir.path(), isnad_audit::Options::default())
                .expect("reopens after the kill");
        assert!(recovery.size.0 >= acked.len() as u64);
        for &(index, i) in &acked {
            assert_eq!(
                log.read_record(LeafIndex(index))
                    .expect("acknowledged, so durable"),
                bytes(i),
                "round {round}, leaf {index}"
            );
        }
        // The hash files were repaired: the log's root is the verifier's.
        let root = log.root();
        drop(log);
        let key = signer();
        let report = verify_dir(dir.path(), key.verifier_key(), |_, _| {}).expect("verifies");
        assert_eq!(report.root, root);
        assert_eq!(report.records, recovery.size.0);
    }
    assert!(zero_tails > 0, "killed writers left their zero tails");
}

#[test]
fn a_newer_checkpoint_by_size_counts_even_if_checkpoint_was_not_replaced() {
    // A crash after checkpoints/<size> was written and before `checkpoint` was replaced: the
    // newer signed size still binds the log.
    let dir = tempfile::tempdir().expect("tempdir");
    let signer = signer();
    write_log(dir.path(), &signer, 10, 100);
    let older = std::fs::read(dir.path().join("checkpoint")).expect("read");
    {
        let (log, _) = open(dir.path(), &signer);
        for i in 10..20 {
            log.append_wait(bytes(i)).expect("appends");
        }
        log.checkpoint_now().expect("checkpoint at 20");
    }
    std::fs::write(dir.path().join("checkpoint"), older).expect("put the older one back");
    let (log, recovery) = open(dir.path(), &signer);
    assert_eq!(recovery.checkpoint, Some(TreeSize(20)));
    assert_eq!(log.latest_checkpoint().expect("latest").size, TreeSize(20));
    drop(log);
    // And a log cut below it is refused.
    let path = last_segment(dir.path());
    let b = std::fs::read(&path).expect("read");
    std::fs::write(&path, &b[..b.len() - 3]).expect("cut");
    let err = isnad_audit::AuditLog::open(dir.path(), options(&signer)).expect_err("refused");
    assert_eq!(err.code(), "log_shorter_than_checkpoint");
}
