//! Damaged logs: the verifier names the problem (segment file, byte offset, leaf, checkpoint
//! file) and `open` refuses everything but a torn tail.

mod common;

use std::path::{Path, PathBuf};

use common::*;
use isnad_audit::segment::{FRAME_HEADER_LEN, HEADER_LEN};
use isnad_audit::{AuditLog, CheckpointSigner, VerifyError, verify_dir};

const RECORDS: u64 = 50;
const PER_SEGMENT: u64 = 8;

struct Damaged {
    dir: tempfile::TempDir,
    signer: std::sync::Arc<CheckpointSigner>,
}

impl Damaged {
    fn new() -> Damaged {
        let dir = tempfile::tempdir().expect("tempdir");
        let signer = signer();
        write_log(dir.path(), &signer, RECORDS, PER_SEGMENT);
        Damaged { dir, signer }
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }

    fn segment(&self, n: usize) -> PathBuf {
        segment_files(self.path())[n].clone()
    }

    /// The offsets of the frames of segment `n`, and the segment's length at the end.
    fn frames(&self, n: usize) -> Vec<u64> {
        let b = std::fs::read(self.segment(n)).expect("read");
        let mut out = vec![];
        let mut at = HEADER_LEN;
        while at < b.len() {
            out.push(at as u64);
            let len = u32::from_le_bytes(b[at..at + 4].try_into().expect("4 bytes")) as usize;
            at += FRAME_HEADER_LEN + len;
        }
        out.push(at as u64);
        out
    }

    /// The offset of frame `k` (0-based) of segment `n`.
    fn frame_at(&self, n: usize, k: usize) -> u64 {
        self.frames(n)[k]
    }

    fn flip(&self, segment: usize, offset: u64) {
        let path = self.segment(segment);
        let mut b = std::fs::read(&path).expect("read");
        b[offset as usize] ^= 0x01;
        std::fs::write(&path, b).expect("write");
    }

    fn verify_err(&self) -> VerifyError {
        verify_dir(self.path(), self.signer.verifier_key(), |_, _| {}).expect_err("damage found")
    }

    fn open_code(&self) -> &'static str {
        AuditLog::open(self.path(), options(&self.signer))
            .expect_err("refused")
            .code()
    }
}

fn segment_error(e: VerifyError) -> isnad_audit::segment::SegmentError {
    match e {
        VerifyError::Segment(s) => s,
        other => panic!("not a segment error: {other}"),
    }
}

#[test]
fn a_flipped_byte_in_a_middle_segment_is_named_with_its_offset() {
    // frame 2 of segment 3 (leaf 26): its length, index, CRC and payload
    let d0 = Damaged::new();
    let frame = d0.frame_at(3, 2);
    let name = file_name(&d0.segment(3));
    drop(d0);
    for (what, delta) in [("length", 0u64), ("index", 5), ("crc", 13), ("payload", 40)] {
        let d = Damaged::new();
        d.flip(3, frame + delta);
        let e = segment_error(d.verify_err());
        assert_eq!(e.file, name, "{what}");
        assert_eq!(e.offset, frame, "{what}: the frame's offset");
        assert!(
            matches!(e.code(), "bad_crc" | "bad_length"),
            "{what}: {}",
            e.code()
        );
        assert!(e.to_string().contains(&name) && e.to_string().contains(&frame.to_string()));
        assert_eq!(d.open_code(), e.code(), "{what}: open refuses alike");
    }
}

#[test]
fn a_flipped_byte_in_a_segment_header_is_named() {
    for segment in [0usize, 3, 6] {
        let d = Damaged::new();
        d.flip(segment, 13);
        let e = segment_error(d.verify_err());
        assert_eq!(e.code(), "bad_header");
        assert_eq!(e.offset, 0);
        assert_eq!(e.file, file_name(&d.segment(segment)));
        assert_eq!(d.open_code(), "bad_header", "segment {segment}");
    }
}

#[test]
fn a_flipped_byte_before_the_tail_of_the_last_segment_refuses() {
    let d = Damaged::new();
    // 50 records, 8 per segment: the last segment holds leaves 48 and 49; damage leaf 48.
    d.flip(6, d.frame_at(6, 0) + 30);
    let e = segment_error(d.verify_err());
    assert_eq!((e.code(), e.offset), ("bad_crc", d.frame_at(6, 0)));
    assert_eq!(d.open_code(), "bad_crc");
}

#[test]
fn a_flipped_byte_in_the_last_signed_record_refuses_to_open() {
    let d = Damaged::new();
    d.flip(6, d.frame_at(6, 1) + 30);
    assert_eq!(segment_error(d.verify_err()).code(), "bad_crc");
    // It looks like a torn tail, but it is inside the signed tree.
    assert_eq!(d.open_code(), "log_shorter_than_checkpoint");
}

#[test]
fn a_middle_segment_cut_short_is_refused() {
    let d = Damaged::new();
    let path = d.segment(2);
    let b = std::fs::read(&path).expect("read");
    let at = d.frame_at(2, 5);
    // Cut in the middle of a frame, then at a frame boundary.
    std::fs::write(&path, &b[..(at + 7) as usize]).expect("cut");
    let e = segment_error(d.verify_err());
    assert_eq!((e.code(), e.offset), ("truncated", at));
    assert_eq!(d.open_code(), "truncated");
    std::fs::write(&path, &b[..at as usize]).expect("cut");
    let e = segment_error(d.verify_err());
    assert_eq!(e.code(), "missing_segment");
    assert_eq!(
        e.file,
        file_name(&d.segment(3)),
        "noticed where the next segment starts"
    );
    assert_eq!(e.index, Some(isnad_audit::LeafIndex(24)));
    assert_eq!(d.open_code(), "missing_segment");
}

#[test]
fn a_removed_record_is_an_index_gap_at_its_place() {
    let d = Damaged::new();
    let path = d.segment(1);
    let mut b = std::fs::read(&path).expect("read");
    let (from, to) = (d.frame_at(1, 3) as usize, d.frame_at(1, 4) as usize);
    b.drain(from..to);
    std::fs::write(&path, b).expect("write");
    let e = segment_error(d.verify_err());
    assert_eq!(e.code(), "index_gap");
    assert_eq!(e.offset, from as u64);
    assert_eq!(
        e.index,
        Some(isnad_audit::LeafIndex(12)),
        "found leaf 12 where 11 was due"
    );
    assert_eq!(d.open_code(), "index_gap");
}

#[test]
fn a_swapped_pair_of_records_is_an_index_gap() {
    let d = Damaged::new();
    let path = d.segment(4);
    let mut b = std::fs::read(&path).expect("read");
    let f = d.frames(4);
    let (a, c, end) = (f[2] as usize, f[3] as usize, f[4] as usize);
    let swapped: Vec<u8> = [&b[c..end], &b[a..c]].concat();
    b.splice(a..end, swapped);
    std::fs::write(&path, b).expect("write");
    let e = segment_error(d.verify_err());
    assert_eq!((e.code(), e.offset), ("index_gap", a as u64));
    assert_eq!(d.open_code(), "index_gap");
}

#[test]
fn a_missing_middle_segment_is_named() {
    let d = Damaged::new();
    std::fs::remove_file(d.segment(3)).expect("rm");
    let e = segment_error(d.verify_err());
    assert_eq!(e.code(), "missing_segment");
    assert_eq!(e.file, "00000000000000000032.seg");
    assert!(e.to_string().contains("leaf 24"), "{e}");
    assert_eq!(d.open_code(), "missing_segment");
}

#[test]
fn a_missing_first_segment_is_named() {
    let d = Damaged::new();
    std::fs::remove_file(d.segment(0)).expect("rm");
    assert_eq!(segment_error(d.verify_err()).code(), "missing_segment");
    assert_eq!(d.open_code(), "missing_segment");
}

#[test]
fn a_stranger_file_among_the_segments_is_refused() {
    let d = Damaged::new();
    std::fs::write(d.path().join("segments/notes.txt"), b"hello").expect("write");
    assert_eq!(segment_error(d.verify_err()).code(), "unexpected_file");
    assert_eq!(d.open_code(), "unexpected_file");
}

fn edit_checkpoint(d: &Damaged, edit: impl Fn(&str) -> String) -> PathBuf {
    let path = d.path().join("checkpoint");
    let note = std::fs::read_to_string(&path).expect("read");
    std::fs::write(&path, edit(&note)).expect("write");
    path
}

#[test]
fn a_checkpoint_with_an_edited_size_or_root_and_the_old_signature_is_refused() {
    let d = Damaged::new();
    let path = edit_checkpoint(&d, |n| n.replacen("\n50\n", "\n49\n", 1));
    match d.verify_err() {
        VerifyError::Checkpoint { file, source } => {
            assert_eq!(file, path);
            assert_eq!(source.code(), "note_bad_signature");
        }
        other => panic!("{other}"),
    }
    assert_eq!(d.open_code(), "note_bad_signature");

    let d = Damaged::new();
    edit_checkpoint(&d, |n| {
        let mut lines: Vec<String> = n.split('\n').map(str::to_owned).collect();
        lines[2] = lines[2].replacen(
            &lines[2][..1],
            if &lines[2][..1] == "A" { "B" } else { "A" },
            1,
        );
        lines.join("\n")
    });
    assert_eq!(d.verify_err().code(), "note_bad_signature");
    assert_eq!(d.open_code(), "note_bad_signature");
}

#[test]
fn a_checkpoint_signed_by_another_key_is_refused() {
    let d = Damaged::new();
    let other = signer();
    let root = {
        let (log, _) = open(d.path(), &d.signer);
        log.root()
    };
    std::fs::write(
        d.path().join("checkpoint"),
        other.sign(isnad_audit::TreeSize(RECORDS), &root),
    )
    .expect("write");
    assert_eq!(d.verify_err().code(), "note_not_signed");
    assert_eq!(d.open_code(), "note_not_signed");
}

#[test]
fn a_validly_signed_checkpoint_of_another_tree_is_refused() {
    // The log's own key signing a root the log does not have (a fork, or a rewritten log).
    let d = Damaged::new();
    std::fs::write(
        d.path().join("checkpoint"),
        d.signer.sign(isnad_audit::TreeSize(20), &[7; 32]),
    )
    .expect("write");
    match d.verify_err() {
        VerifyError::CheckpointRoot { file, size } => {
            assert_eq!(file, d.path().join("checkpoint"));
            assert_eq!(size.0, 20);
        }
        other => panic!("{other}"),
    }
    assert_eq!(d.open_code(), "checkpoint_mismatch");
    std::fs::write(
        d.path().join("checkpoint"),
        d.signer.sign(isnad_audit::TreeSize(RECORDS + 5), &[7; 32]),
    )
    .expect("write");
    assert_eq!(d.verify_err().code(), "checkpoint_beyond_log");
    assert_eq!(d.open_code(), "log_shorter_than_checkpoint");
}

#[test]
fn an_older_checkpoint_file_that_disagrees_is_named() {
    let d = Damaged::new();
    let path = d.path().join("checkpoints/00000000000000000050");
    std::fs::write(&path, d.signer.sign(isnad_audit::TreeSize(49), &[1; 32])).expect("write");
    match d.verify_err() {
        VerifyError::CheckpointName { file, .. } => assert_eq!(file, path),
        other => panic!("{other}"),
    }
}

#[test]
fn a_record_that_does_not_decode_is_named_by_the_verifier() {
    // A log whose frames are fine but whose payload is not a record (written around the API).
    let d = Damaged::new();
    let path = d.segment(2);
    let mut b = std::fs::read(&path).expect("read");
    let at = d.frame_at(2, 1) as usize;
    let len = bytes(17).len();
    let mut payload = b[at + FRAME_HEADER_LEN..at + FRAME_HEADER_LEN + len].to_vec();
    payload[0] = 9; // unknown version
    let mut frame = Vec::new();
    isnad_audit::segment::encode_frame(isnad_audit::LeafIndex(17), &payload, &mut frame);
    b[at..at + frame.len()].copy_from_slice(&frame);
    std::fs::write(&path, b).expect("write");
    let e = segment_error(d.verify_err());
    assert_eq!(e.code(), "record_unknown_version");
    assert_eq!(
        (e.offset, e.index),
        (at as u64, Some(isnad_audit::LeafIndex(17)))
    );
}

#[test]
fn the_undamaged_log_verifies() {
    let d = Damaged::new();
    let mut calls = 0;
    let report = verify_dir(d.path(), d.signer.verifier_key(), |_, _| calls += 1).expect("ok");
    assert_eq!(report.records, RECORDS);
    assert_eq!(report.checkpoints, 2);
    assert!(calls >= 1);
}
