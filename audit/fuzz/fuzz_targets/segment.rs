//! The segment reader and the record decoder on hostile bytes: the whole input is read as a
//! segment file (header, frames, every payload decoded as a record), as the last segment and as
//! a sealed one, and, separately, as one record. Neither may panic; every error names an offset
//! inside the input; whatever is accepted is canonical (a record re-encodes to the same bytes, a
//! segment is read to its end, where only the last may have a tail of zeros); the two roles
//! agree except on that tail; the verifier's validation agrees with the full decoder.

#![no_main]

use isnad_audit::AuditRecord;
use isnad_audit::record::RecordView;
use isnad_audit::segment::{HEADER_LEN, Problem, SegmentRole, scan_segment_bytes};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let last = scan_segment_bytes("fuzz.seg", data, SegmentRole::Last);
    let sealed = scan_segment_bytes("fuzz.seg", data, SegmentRole::Sealed);
    match &last {
        Ok(summary) => {
            assert_eq!(
                summary.bytes + summary.zero_tail,
                data.len() as u64,
                "a good segment is read to its end"
            );
            assert!(data.len() >= HEADER_LEN);
            assert!(
                data[summary.bytes as usize..].iter().all(|&b| b == 0),
                "the records end where only zeros follow"
            );
            // A sealed segment is the same without the zero tail.
            match &sealed {
                Ok(s) => assert_eq!((s, summary.zero_tail), (summary, 0)),
                Err(e) => {
                    assert!(summary.zero_tail > 0, "only the tail differs");
                    assert_eq!((e.code(), e.offset), ("zero_tail_not_last", summary.bytes));
                }
            }
        }
        Err(e) => {
            assert!(e.offset <= data.len() as u64, "offset {} past {} bytes", e.offset, data.len());
            assert!(!e.code().is_empty());
            if let Problem::DataAfterZeros { data_at } = e.problem {
                assert!(data_at > e.offset && data_at < data.len() as u64);
                assert!(data[e.offset as usize..data_at as usize].iter().all(|&b| b == 0));
            }
            let _ = e.to_string();
            assert_eq!(sealed.as_ref().err(), Some(e), "damage is damage in either role");
        }
    }
    // The verifier's validation (no views) and the full decoder agree on every input.
    assert_eq!(
        RecordView::validate(data),
        RecordView::parse(data).map(|_| ()),
        "validate and parse disagree"
    );
    match AuditRecord::decode(data) {
        Ok(record) => {
            let again = record.encode().expect("a decoded record encodes");
            assert_eq!(again, data, "decode then encode gives the same bytes");
        }
        Err(e) => {
            assert!(e.offset() <= data.len());
            assert!(!e.code().is_empty());
            let _ = e.to_string();
        }
    }
});
