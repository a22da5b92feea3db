//! Export: records streamed from the segments with their exact bytes, for JSON Lines.

mod common;

use common::*;
use isnad_audit::merkle::leaf_hash;
use isnad_audit::{AuditLog, Export, LeafIndex, Options};

#[test]
fn a_range_across_segments_comes_out_with_exact_bytes_and_decoded_fields() {
    let dir = tempfile::tempdir().expect("tempdir");
    let signer = signer();
    write_log(dir.path(), &signer, 40, 8);
    let out: Vec<_> = Export::open(dir.path(), LeafIndex(5), Some(LeafIndex(21)))
        .expect("opens")
        .collect::<Result<_, _>>()
        .expect("reads");
    assert_eq!(out.len(), 16);
    let (log, _) = AuditLog::open(dir.path(), Options::default()).expect("opens");
    for (k, item) in out.iter().enumerate() {
        let i = 5 + k as u64;
        assert_eq!(item.index, LeafIndex(i));
        assert_eq!(item.bytes, bytes(i));
        assert_eq!(item.record, record(i));
        assert_eq!(
            leaf_hash(&item.bytes),
            log.leaf_hash(item.index).expect("leaf")
        );
    }
    let all = Export::open(dir.path(), LeafIndex(0), None)
        .expect("opens")
        .count();
    assert_eq!(all, 40);
}

#[test]
fn export_stops_at_the_first_damage_and_names_it() {
    let dir = tempfile::tempdir().expect("tempdir");
    let signer = signer();
    write_log(dir.path(), &signer, 20, 8);
    let path = &segment_files(dir.path())[1];
    let mut b = std::fs::read(path).expect("read");
    b[100] ^= 1;
    std::fs::write(path, b).expect("write");
    let items: Vec<_> = Export::open(dir.path(), LeafIndex(0), None)
        .expect("opens")
        .collect();
    let err = items
        .last()
        .expect("items")
        .as_ref()
        .expect_err("ends with the damage");
    assert_eq!(err.code(), "bad_crc");
    assert!(
        err.to_string().contains("00000000000000000008.seg"),
        "{err}"
    );
    assert!(items[..items.len() - 1].iter().all(Result::is_ok));
}
