//! The segment reader and the record decoder on hostile bytes: the whole input is read as a
//! segment file (header, frames, every payload decoded as a record) and, separately, as one
//! record. Neither may panic; every error names an offset inside the input; whatever is
//! accepted is canonical (a record re-encodes to the same bytes, a segment is read to its end);
//! the verifier's validation agrees with the full decoder.

#![no_main]

use isnad_audit::AuditRecord;
use isnad_audit::record::RecordView;
use isnad_audit::segment::{HEADER_LEN, scan_segment_bytes};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    match scan_segment_bytes("fuzz.seg", data) {
        Ok(summary) => {
            assert_eq!(summary.bytes, data.len() as u64, "a good segment is read to its end");
            assert!(data.len() >= HEADER_LEN);
        }
        Err(e) => {
            assert!(e.offset <= data.len() as u64, "offset {} past {} bytes", e.offset, data.len());
            assert!(!e.code().is_empty());
            let _ = e.to_string();
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
