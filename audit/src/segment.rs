//! Segment files: the log's records, framed, in files of bounded size.
//!
//! A segment `segments/<first leaf index, 20 digits>.seg` is a 24-byte header followed by
//! frames:
//!
//! ```text
//! header: magic "isnadseg" (8) | format version u32 LE (1) | first leaf index u64 LE
//!         | CRC-32C of the 20 bytes before it, u32 LE
//! frame:  payload length u32 LE | leaf index u64 LE
//!         | CRC-32C over (length bytes, index bytes, payload) u32 LE | payload
//! ```
//!
//! The last segment may end in a zero tail: the writer keeps it extended with zero bytes ahead
//! of its records, so that a batch's `fdatasync` writes inside the file's size and carries no
//! metadata. Its records end at the first frame position from which every remaining byte is
//! zero (a frame's length is never 0, so zeros there cannot be a record). Any other segment
//! ends exactly after its last frame: it was cut to that length before its successor was
//! created.
//!
//! The reader streams frames from any [`Read`] with one large buffer (no allocation per
//! record) and reports every problem with the segment's file name, the byte offset of the frame
//! (or header) and the leaf index when known.

use std::fs::{File, OpenOptions};
use std::io::{self, Read};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use thiserror::Error;

use crate::LeafIndex;
use crate::record::MAX_RECORD_LEN;

/// The first 8 bytes of every segment.
pub const SEGMENT_MAGIC: [u8; 8] = *b"isnadseg";
/// The segment format version.
pub const SEGMENT_VERSION: u32 = 1;
/// The length of a segment header.
pub const HEADER_LEN: usize = 24;
/// The length of a frame header (length, index, CRC).
pub const FRAME_HEADER_LEN: usize = 16;
/// The directory of segments inside a log directory.
pub const SEGMENTS_DIR: &str = "segments";

/// Where a segment stands in the log, which decides how it may end.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SegmentRole {
    /// A segment with a successor: it ends exactly after its last frame.
    Sealed,
    /// The last segment: after its last frame it may hold a tail of zero bytes.
    Last,
}

impl SegmentRole {
    /// The role of segment `position` of `count`.
    pub fn of(position: usize, count: usize) -> SegmentRole {
        if position + 1 >= count {
            SegmentRole::Last
        } else {
            SegmentRole::Sealed
        }
    }
}

/// What is wrong at a place in a segment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Problem {
    /// The header's magic, version or CRC is wrong.
    BadHeader,
    /// The header's first index is not the one in the file name.
    NameMismatch {
        /// The index in the header.
        header: LeafIndex,
    },
    /// A frame length of 0 or over the record bound.
    BadLength {
        /// The length read.
        len: u32,
    },
    /// A frame whose CRC does not match.
    BadCrc {
        /// Where the frame would end (offset just past its payload).
        frame_end: u64,
    },
    /// A frame (or segment) whose leaf index is not the next one.
    IndexGap {
        /// The index expected.
        expected: LeafIndex,
        /// The index found.
        found: LeafIndex,
    },
    /// A segment that should exist, between two others or at the start, does not.
    MissingSegment {
        /// The leaf index the missing segment would start at.
        expected: LeafIndex,
    },
    /// The file ends inside a header or frame.
    Truncated,
    /// Zero bytes where a frame should start (a length of 0), then non-zero bytes: only zeros
    /// may follow the last record.
    DataAfterZeros {
        /// The offset of the first non-zero byte after the zeros.
        data_at: u64,
    },
    /// A segment that is not the last ends in zero bytes instead of ending at its last frame.
    ZeroTailNotLast,
    /// The payload is not a valid record.
    BadRecord {
        /// The record decoder's code.
        code: &'static str,
        /// The offset within the payload.
        at: usize,
    },
    /// A file in the segment directory that is not a segment.
    UnexpectedFile,
    /// Reading or writing failed.
    Io(io::ErrorKind),
}

impl Problem {
    /// The stable reason code.
    pub fn code(&self) -> &'static str {
        match self {
            Problem::BadHeader => "bad_header",
            Problem::NameMismatch { .. } => "segment_name_mismatch",
            Problem::BadLength { .. } => "bad_length",
            Problem::BadCrc { .. } => "bad_crc",
            Problem::IndexGap { .. } => "index_gap",
            Problem::MissingSegment { .. } => "missing_segment",
            Problem::Truncated => "truncated",
            Problem::DataAfterZeros { .. } => "data_after_zeros",
            Problem::ZeroTailNotLast => "zero_tail_not_last",
            Problem::BadRecord { code, .. } => code,
            Problem::UnexpectedFile => "unexpected_file",
            Problem::Io(_) => "io_error",
        }
    }
}

impl std::fmt::Display for Problem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Problem::BadHeader => write!(f, "bad segment header (magic, version or CRC)"),
            Problem::NameMismatch { header } => {
                write!(f, "header says the segment starts at leaf {header}")
            }
            Problem::BadLength { len } => write!(f, "bad frame length {len}"),
            Problem::BadCrc { .. } => write!(f, "frame CRC does not match"),
            Problem::IndexGap { expected, found } => {
                write!(f, "leaf {found} where leaf {expected} was expected")
            }
            Problem::MissingSegment { expected } => {
                write!(
                    f,
                    "records from leaf {expected} on are missing before this segment (a segment is missing, or the one before was cut short)"
                )
            }
            Problem::Truncated => write!(f, "file ends inside a header or frame"),
            Problem::DataAfterZeros { data_at } => write!(
                f,
                "zero bytes where a frame should start, then non-zero bytes at byte {data_at} (only zeros may follow the last record)"
            ),
            Problem::ZeroTailNotLast => write!(
                f,
                "zero bytes from here to the end of a segment that is not the last (only the last segment may end in zeros)"
            ),
            Problem::BadRecord { code, at } => {
                write!(
                    f,
                    "payload is not a valid record ({code} at payload byte {at})"
                )
            }
            Problem::UnexpectedFile => write!(f, "not a segment file"),
            Problem::Io(kind) => write!(f, "I/O error: {kind}"),
        }
    }
}

/// A problem at a place in a segment file: never record contents, only where.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[error("segment {file}, byte {offset}{}: {problem}", index.map(|i| format!(", leaf {i}")).unwrap_or_default())]
pub struct SegmentError {
    /// The segment's file name (inside `segments/`).
    pub file: String,
    /// The byte offset of the header or frame.
    pub offset: u64,
    /// The leaf index, when known.
    pub index: Option<LeafIndex>,
    /// What is wrong.
    pub problem: Problem,
}

impl SegmentError {
    /// The stable reason code.
    pub fn code(&self) -> &'static str {
        self.problem.code()
    }

    pub(crate) fn io(file: &str, offset: u64, err: &io::Error) -> SegmentError {
        SegmentError {
            file: file.to_owned(),
            offset,
            index: None,
            problem: Problem::Io(err.kind()),
        }
    }
}

/// The file name of the segment whose first record is `first`.
pub fn segment_file_name(first: LeafIndex) -> String {
    format!("{:020}.seg", first.0)
}

/// The first leaf index named by a segment file name, if it is one.
pub fn parse_segment_file_name(name: &str) -> Option<LeafIndex> {
    let digits = name.strip_suffix(".seg")?;
    if digits.len() != 20 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok().map(LeafIndex)
}

/// The header of a segment starting at `first`.
pub fn encode_header(first: LeafIndex) -> [u8; HEADER_LEN] {
    let mut h = [0u8; HEADER_LEN];
    h[..8].copy_from_slice(&SEGMENT_MAGIC);
    h[8..12].copy_from_slice(&SEGMENT_VERSION.to_le_bytes());
    h[12..20].copy_from_slice(&first.0.to_le_bytes());
    let crc = crc32c::crc32c(&h[..20]);
    h[20..].copy_from_slice(&crc.to_le_bytes());
    h
}

/// The first leaf index of a segment header, or what is wrong with it.
pub fn decode_header(h: &[u8]) -> Result<LeafIndex, Problem> {
    if h.len() < HEADER_LEN {
        return Err(Problem::Truncated);
    }
    let crc = u32::from_le_bytes([h[20], h[21], h[22], h[23]]);
    if h[..8] != SEGMENT_MAGIC
        || h[8..12] != SEGMENT_VERSION.to_le_bytes()
        || crc32c::crc32c(&h[..20]) != crc
    {
        return Err(Problem::BadHeader);
    }
    Ok(LeafIndex(read_u64(&h[12..20])))
}

fn read_u64(b: &[u8]) -> u64 {
    let mut a = [0u8; 8];
    a.copy_from_slice(&b[..8]);
    u64::from_le_bytes(a)
}

/// Appends the frame of `payload` as leaf `index` to `out`.
pub fn encode_frame(index: LeafIndex, payload: &[u8], out: &mut Vec<u8>) {
    // Callers bound payloads by MAX_RECORD_LEN, far below u32::MAX.
    let len = (payload.len() as u32).to_le_bytes();
    let idx = index.0.to_le_bytes();
    let mut crc = crc32c::crc32c(&len);
    crc = crc32c::crc32c_append(crc, &idx);
    crc = crc32c::crc32c_append(crc, payload);
    out.extend_from_slice(&len);
    out.extend_from_slice(&idx);
    out.extend_from_slice(&crc.to_le_bytes());
    out.extend_from_slice(payload);
}

/// The length of the frame of a payload of `payload_len` bytes.
pub fn frame_len(payload_len: usize) -> usize {
    FRAME_HEADER_LEN + payload_len
}

/// One frame read from a segment.
#[derive(Debug, Clone, Copy)]
pub struct Frame<'a> {
    /// Its leaf index.
    pub index: LeafIndex,
    /// The byte offset of the frame in its segment.
    pub offset: u64,
    /// The record bytes.
    pub payload: &'a [u8],
}

impl Frame<'_> {
    /// The offset just past this frame.
    pub fn end(&self) -> u64 {
        self.offset + frame_len(self.payload.len()) as u64
    }
}

const BUFFER: usize = 1 << 20;

/// Streams the frames of one segment, checking each one's length, CRC and index.
#[derive(Debug)]
pub struct SegmentReader<R> {
    src: R,
    file: String,
    buf: Vec<u8>,
    start: usize,
    end: usize,
    /// The file offset of `buf[start]`.
    offset: u64,
    eof: bool,
    first: LeafIndex,
    next: LeafIndex,
    role: SegmentRole,
    /// The zero bytes after the last frame, once the end is reached.
    zero_tail: u64,
}

impl<R: Read> SegmentReader<R> {
    /// Reads the header of the segment named `file` from `src`. When `expected_first` is given,
    /// the header must say so (the file name's index, checked by the caller against the file
    /// name and the previous segment). `role` says whether it may end in a zero tail.
    pub fn new(
        src: R,
        file: &str,
        expected_first: Option<LeafIndex>,
        role: SegmentRole,
    ) -> Result<SegmentReader<R>, SegmentError> {
        Self::with_buffer(
            src,
            file,
            expected_first,
            role,
            BUFFER + frame_len(MAX_RECORD_LEN),
        )
    }

    /// As [`SegmentReader::new`] with a buffer of `len` bytes, which must hold the largest frame
    /// (or the whole input, when it is smaller).
    fn with_buffer(
        src: R,
        file: &str,
        expected_first: Option<LeafIndex>,
        role: SegmentRole,
        len: usize,
    ) -> Result<SegmentReader<R>, SegmentError> {
        let mut reader = SegmentReader {
            src,
            file: file.to_owned(),
            buf: vec![0u8; len.max(HEADER_LEN)],
            start: 0,
            end: 0,
            offset: 0,
            eof: false,
            first: LeafIndex(0),
            next: LeafIndex(0),
            role,
            zero_tail: 0,
        };
        reader.fill(HEADER_LEN)?;
        let first = decode_header(&reader.buf[..reader.end])
            .map_err(|problem| reader.err(problem, None))?;
        if let Some(expected) = expected_first
            && expected != first
        {
            return Err(reader.err(Problem::NameMismatch { header: first }, None));
        }
        reader.start = HEADER_LEN;
        reader.offset = HEADER_LEN as u64;
        reader.first = first;
        reader.next = first;
        Ok(reader)
    }

    /// A reader positioned at the frame of leaf `next` at byte `offset` of a segment whose
    /// header was checked before (`src` must be positioned there too).
    pub fn at(
        src: R,
        file: &str,
        first: LeafIndex,
        offset: u64,
        next: LeafIndex,
        role: SegmentRole,
    ) -> SegmentReader<R> {
        SegmentReader {
            src,
            file: file.to_owned(),
            buf: vec![0u8; BUFFER + frame_len(MAX_RECORD_LEN)],
            start: 0,
            end: 0,
            offset,
            eof: false,
            first,
            next,
            role,
            zero_tail: 0,
        }
    }

    /// The first leaf index of this segment.
    pub fn first(&self) -> LeafIndex {
        self.first
    }

    /// The index of the next frame expected (one past the last frame read).
    pub fn next_index(&self) -> LeafIndex {
        self.next
    }

    /// The offset just past the last good frame.
    pub fn offset(&self) -> u64 {
        self.offset
    }

    /// The zero bytes after the last frame of the last segment (0 until its end is read).
    pub fn zero_tail(&self) -> u64 {
        self.zero_tail
    }

    fn err(&self, problem: Problem, index: Option<LeafIndex>) -> SegmentError {
        SegmentError {
            file: self.file.clone(),
            offset: self.offset,
            index,
            problem,
        }
    }

    /// Makes at least `want` bytes available from `start`, unless the file ends first.
    fn fill(&mut self, want: usize) -> Result<(), SegmentError> {
        if self.end - self.start >= want || self.eof {
            return Ok(());
        }
        if self.start > 0 {
            self.buf.copy_within(self.start..self.end, 0);
            self.end -= self.start;
            self.start = 0;
        }
        while self.end < want && self.end < self.buf.len() {
            match self.src.read(&mut self.buf[self.end..]) {
                Ok(0) => {
                    self.eof = true;
                    break;
                }
                Ok(n) => self.end += n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(SegmentError::io(&self.file, self.offset, &e)),
            }
        }
        Ok(())
    }

    /// Reads from a frame position (`offset`) to the end of the file, which must hold only
    /// zeros: the zero tail of the last segment, whose length it returns.
    fn zero_tail_to_end(&mut self) -> Result<u64, SegmentError> {
        let mut at = self.offset;
        loop {
            let bytes = &self.buf[self.start..self.end];
            if let Some(k) = bytes.iter().position(|&b| b != 0) {
                let data_at = at + k as u64;
                return Err(self.err(Problem::DataAfterZeros { data_at }, None));
            }
            at += bytes.len() as u64;
            self.start = self.end;
            if self.eof {
                break;
            }
            self.fill(1)?;
            if self.start == self.end {
                break;
            }
        }
        match self.role {
            SegmentRole::Last => Ok(at - self.offset),
            SegmentRole::Sealed => Err(self.err(Problem::ZeroTailNotLast, None)),
        }
    }

    /// The next frame, `None` at the clean end of the segment (its last byte, or the zero tail
    /// of the last segment), or the first problem.
    pub fn next_frame(&mut self) -> Result<Option<Frame<'_>>, SegmentError> {
        self.fill(FRAME_HEADER_LEN)?;
        let avail = self.end - self.start;
        if avail == 0 {
            return Ok(None);
        }
        // A frame's length is never 0: zeros where one should start are the zero tail.
        let length_bytes = &self.buf[self.start..self.start + avail.min(4)];
        if length_bytes.iter().all(|&b| b == 0) {
            self.zero_tail = self.zero_tail_to_end()?;
            return Ok(None);
        }
        if avail < FRAME_HEADER_LEN {
            return Err(self.err(Problem::Truncated, None));
        }
        let h = &self.buf[self.start..self.start + FRAME_HEADER_LEN];
        let len = u32::from_le_bytes([h[0], h[1], h[2], h[3]]);
        if len == 0 || len as usize > MAX_RECORD_LEN {
            return Err(self.err(Problem::BadLength { len }, None));
        }
        let total = frame_len(len as usize);
        self.fill(total)?;
        if self.end - self.start < total {
            return Err(self.err(Problem::Truncated, None));
        }
        let frame = &self.buf[self.start..self.start + total];
        let index = LeafIndex(read_u64(&frame[4..12]));
        let stored = u32::from_le_bytes([frame[12], frame[13], frame[14], frame[15]]);
        let crc = crc32c::crc32c_append(crc32c::crc32c(&frame[..12]), &frame[FRAME_HEADER_LEN..]);
        if crc != stored {
            let frame_end = self.offset + total as u64;
            return Err(self.err(Problem::BadCrc { frame_end }, None));
        }
        if index != self.next {
            return Err(self.err(
                Problem::IndexGap {
                    expected: self.next,
                    found: index,
                },
                Some(index),
            ));
        }
        let offset = self.offset;
        self.start += total;
        self.offset += total as u64;
        self.next = LeafIndex(index.0 + 1);
        Ok(Some(Frame {
            index,
            offset,
            payload: &self.buf[self.start - len as usize..self.start],
        }))
    }
}

/// The segments of a log directory, in order of their first index, checked for names only.
pub fn list_segments(dir: &Path) -> Result<Vec<(LeafIndex, PathBuf)>, SegmentError> {
    let seg_dir = dir.join(SEGMENTS_DIR);
    let entries = std::fs::read_dir(&seg_dir).map_err(|e| SegmentError::io("", 0, &e))?;
    let mut out = Vec::new();
    for entry in entries {
        let entry = entry.map_err(|e| SegmentError::io("", 0, &e))?;
        let name = entry.file_name();
        let name = name.to_string_lossy();
        match parse_segment_file_name(&name) {
            Some(first) => out.push((first, entry.path())),
            None => {
                return Err(SegmentError {
                    file: name.into_owned(),
                    offset: 0,
                    index: None,
                    problem: Problem::UnexpectedFile,
                });
            }
        }
    }
    out.sort_by_key(|(first, _)| *first);
    Ok(out)
}

/// Checks that a segment starting at `first` follows on from `expected` (the previous
/// segment's end, or 0).
pub(crate) fn check_continuity(
    file: &str,
    first: LeafIndex,
    expected: LeafIndex,
) -> Result<(), SegmentError> {
    if first == expected {
        return Ok(());
    }
    let problem = if first > expected {
        Problem::MissingSegment { expected }
    } else {
        Problem::IndexGap {
            expected,
            found: first,
        }
    };
    Err(SegmentError {
        file: file.to_owned(),
        offset: 0,
        index: Some(first),
        problem,
    })
}

/// Summary of a segment read from memory.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ScanSummary {
    /// Its first leaf index.
    pub first: LeafIndex,
    /// Its records.
    pub records: u64,
    /// Its length in bytes up to the end of its last frame.
    pub bytes: u64,
    /// The zero bytes after that (only in the last segment).
    pub zero_tail: u64,
}

/// Reads a whole segment held in memory, checking every frame and decoding every record: what
/// the fuzz target runs, and the same code paths as the verifier.
pub fn scan_segment_bytes(
    file: &str,
    bytes: &[u8],
    role: SegmentRole,
) -> Result<ScanSummary, SegmentError> {
    // A buffer the size of the input holds any frame the input can contain.
    let buffer = bytes.len().min(BUFFER + frame_len(MAX_RECORD_LEN));
    let mut reader = SegmentReader::with_buffer(bytes, file, None, role, buffer)?;
    let mut records = 0u64;
    loop {
        let (index, offset, result) = match reader.next_frame()? {
            None => break,
            Some(frame) => (
                frame.index,
                frame.offset,
                crate::record::RecordView::validate(frame.payload),
            ),
        };
        if let Err(e) = result {
            return Err(SegmentError {
                file: file.to_owned(),
                offset,
                index: Some(index),
                problem: Problem::BadRecord {
                    code: e.code(),
                    at: e.offset(),
                },
            });
        }
        records += 1;
    }
    Ok(ScanSummary {
        first: reader.first(),
        records,
        bytes: reader.offset(),
        zero_tail: reader.zero_tail(),
    })
}

/// Fsyncs a directory, so that a file created or renamed in it survives a crash.
pub(crate) fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

/// Creates the segment starting at `first`: header written and synced, directory synced.
pub(crate) fn create_segment(dir: &Path, first: LeafIndex) -> io::Result<(File, PathBuf)> {
    let seg_dir = dir.join(SEGMENTS_DIR);
    let path = seg_dir.join(segment_file_name(first));
    // Written by position, not appended: the writer fills the zero tail it keeps ahead.
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .create_new(true)
        .open(&path)?;
    file.write_all_at(&encode_header(first), 0)?;
    file.sync_data()?;
    sync_dir(&seg_dir)?;
    Ok((file, path))
}
