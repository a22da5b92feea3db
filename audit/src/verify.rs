//! The offline verifier: reads only the segments, checkpoints and key (never the derived
//! files), recomputes every leaf and the tree, decodes every record, and checks every signed
//! checkpoint against the recomputed root at its size. And `export`, which streams records
//! with their exact bytes.

use std::fs::File;
use std::path::{Path, PathBuf};

use thiserror::Error;

use crate::checkpoint::{Checkpoint, NoteError, VerifierKey};
use crate::log::{CHECKPOINT_FILE, CHECKPOINTS_DIR, KEY_FILE};
use crate::merkle::{Frontier, empty_root, leaf_hash};
use crate::record::{AuditRecord, RecordView};
use crate::segment::{
    Problem, SegmentError, SegmentReader, SegmentRole, check_continuity, list_segments,
    segment_file_name,
};
use crate::{Hash, LeafIndex, TreeSize};

/// The first inconsistency found.
#[derive(Debug, Error)]
pub enum VerifyError {
    /// A segment is damaged, missing, out of order, or holds an invalid record.
    #[error(transparent)]
    Segment(#[from] SegmentError),
    /// A file could not be read.
    #[error("{}: {kind}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// What the system said.
        kind: std::io::ErrorKind,
    },
    /// A checkpoint (or the key file) is malformed or not signed by the log's key.
    #[error("{}: {source}", file.display())]
    Checkpoint {
        /// The file.
        file: PathBuf,
        /// What is wrong.
        source: NoteError,
    },
    /// A file in `checkpoints/` whose name is not the size it signs.
    #[error("{}: the name is not the checkpoint's size {size}", file.display())]
    CheckpointName {
        /// The file.
        file: PathBuf,
        /// The size inside.
        size: TreeSize,
    },
    /// A checkpoint of more records than the log has.
    #[error("{}: signs {size} records, the log has {log}", file.display())]
    CheckpointBeyondLog {
        /// The file.
        file: PathBuf,
        /// Its size.
        size: TreeSize,
        /// The log's size.
        log: TreeSize,
    },
    /// A checkpoint whose root is not the recomputed root at its size.
    #[error("{}: the root at size {size} is not the signed one", file.display())]
    CheckpointRoot {
        /// The file.
        file: PathBuf,
        /// Its size.
        size: TreeSize,
    },
}

impl VerifyError {
    /// The stable reason code.
    pub fn code(&self) -> &'static str {
        match self {
            VerifyError::Segment(e) => e.code(),
            VerifyError::Io { .. } => "io_error",
            VerifyError::Checkpoint { source, .. } => source.code(),
            VerifyError::CheckpointName { .. } => "checkpoint_name_mismatch",
            VerifyError::CheckpointBeyondLog { .. } => "checkpoint_beyond_log",
            VerifyError::CheckpointRoot { .. } => "checkpoint_root_mismatch",
        }
    }

    fn io(path: impl Into<PathBuf>, e: &std::io::Error) -> VerifyError {
        VerifyError::Io {
            path: path.into(),
            kind: e.kind(),
        }
    }
}

/// What a successful verification covered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Report {
    /// Records read, decoded and hashed.
    pub records: u64,
    /// Bytes of segments read, up to the last record (the zero tail of the last segment, if
    /// any, is checked and not counted).
    pub bytes: u64,
    /// Segment files.
    pub segments: usize,
    /// The recomputed root of the whole log.
    pub root: Hash,
    /// Checkpoint files checked (including `checkpoint`).
    pub checkpoints: usize,
    /// The largest checkpointed size.
    pub latest_checkpoint: Option<TreeSize>,
}

/// The log's key as `LOGDIR/log.pub` gives it.
pub fn load_key(dir: &Path) -> Result<VerifierKey, VerifyError> {
    let path = dir.join(KEY_FILE);
    let text = std::fs::read_to_string(&path).map_err(|e| VerifyError::io(&path, &e))?;
    VerifierKey::parse(&text).map_err(|source| VerifyError::Checkpoint { file: path, source })
}

fn read_checkpoint(path: &Path, key: &VerifierKey) -> Result<Checkpoint, VerifyError> {
    let note = std::fs::read_to_string(path).map_err(|e| VerifyError::io(path, &e))?;
    Checkpoint::verify(&note, key).map_err(|source| VerifyError::Checkpoint {
        file: path.to_path_buf(),
        source,
    })
}

/// Verifies the log in `dir` against `key` (see the module's documentation). `progress` is
/// told the records and bytes read so far, every 65,536 records and at the end.
pub fn verify_dir(
    dir: &Path,
    key: &VerifierKey,
    mut progress: impl FnMut(u64, u64),
) -> Result<Report, VerifyError> {
    // Every checkpoint first, so the tree is checked at each size as it is rebuilt.
    let mut checkpoints: Vec<(TreeSize, Hash, PathBuf)> = Vec::new();
    let cp_dir = dir.join(CHECKPOINTS_DIR);
    if cp_dir.is_dir() {
        let entries = std::fs::read_dir(&cp_dir).map_err(|e| VerifyError::io(&cp_dir, &e))?;
        for entry in entries {
            let entry = entry.map_err(|e| VerifyError::io(&cp_dir, &e))?;
            let path = entry.path();
            let name = entry.file_name().to_string_lossy().into_owned();
            if name.starts_with('.') && name.ends_with(".tmp") {
                continue; // an interrupted atomic write
            }
            let cp = read_checkpoint(&path, key)?;
            if name != format!("{:020}", cp.size.0) {
                return Err(VerifyError::CheckpointName {
                    file: path,
                    size: cp.size,
                });
            }
            checkpoints.push((cp.size, cp.root, path));
        }
    }
    let latest = dir.join(CHECKPOINT_FILE);
    if latest.exists() {
        let cp = read_checkpoint(&latest, key)?;
        checkpoints.push((cp.size, cp.root, latest));
    }
    checkpoints.sort_by(|a, b| a.0.cmp(&b.0).then_with(|| a.2.cmp(&b.2)));
    let checked = checkpoints.len();
    let latest_checkpoint = checkpoints.last().map(|c| c.0);
    let mut pending = checkpoints.into_iter().peekable();

    let mut frontier = Frontier::new();
    let check_due =
        |frontier: &Frontier,
         pending: &mut std::iter::Peekable<std::vec::IntoIter<(TreeSize, Hash, PathBuf)>>|
         -> Result<(), VerifyError> {
            while let Some((size, root, _)) = pending.peek() {
                if *size != frontier.size() {
                    break;
                }
                let ok = *root == frontier.root();
                let (size, _, file) = pending.next().ok_or(VerifyError::Io {
                    path: PathBuf::new(),
                    kind: std::io::ErrorKind::Other,
                })?;
                if !ok {
                    return Err(VerifyError::CheckpointRoot { file, size });
                }
            }
            Ok(())
        };
    check_due(&frontier, &mut pending)?;

    let segments = list_segments(dir)?;
    let mut expected = LeafIndex(0);
    let mut bytes = 0u64;
    for (position, (first, path)) in segments.iter().enumerate() {
        let name = segment_file_name(*first);
        check_continuity(&name, *first, expected)?;
        let file = File::open(path).map_err(|e| VerifyError::io(path, &e))?;
        let role = SegmentRole::of(position, segments.len());
        let mut reader = SegmentReader::new(file, &name, Some(*first), role)?;
        while let Some(frame) = reader.next_frame()? {
            if let Err(e) = RecordView::validate(frame.payload) {
                return Err(SegmentError {
                    file: name.clone(),
                    offset: frame.offset,
                    index: Some(frame.index),
                    problem: Problem::BadRecord {
                        code: e.code(),
                        at: e.offset(),
                    },
                }
                .into());
            }
            frontier.append(leaf_hash(frame.payload), |_, _, _| {});
            check_due(&frontier, &mut pending)?;
            if frontier.size().0.is_multiple_of(65_536) {
                progress(frontier.size().0, bytes + reader.offset());
            }
        }
        expected = reader.next_index();
        bytes += reader.offset();
    }
    if let Some((size, _, file)) = pending.next() {
        return Err(VerifyError::CheckpointBeyondLog {
            file,
            size,
            log: frontier.size(),
        });
    }
    progress(frontier.size().0, bytes);
    Ok(Report {
        records: frontier.size().0,
        bytes,
        segments: segments.len(),
        root: if frontier.size().0 == 0 {
            empty_root()
        } else {
            frontier.root()
        },
        checkpoints: checked,
        latest_checkpoint,
    })
}

/// One exported record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExportedRecord {
    /// Its leaf index.
    pub index: LeafIndex,
    /// Its exact stored bytes (the leaf is SHA-256(0x00 || bytes)).
    pub bytes: Vec<u8>,
    /// The decoded record.
    pub record: AuditRecord,
}

/// Streams the records `from..to` of a log directory from its segments, checking framing and
/// decoding each record. Errors end the stream.
#[derive(Debug)]
pub struct Export {
    segments: Vec<(LeafIndex, PathBuf)>,
    next_segment: usize,
    reader: Option<SegmentReader<File>>,
    from: u64,
    to: u64,
    expected: LeafIndex,
    finished: bool,
}

impl Export {
    /// The records with leaf indexes in `from..to` (`to` = `None`: to the end).
    pub fn open(dir: &Path, from: LeafIndex, to: Option<LeafIndex>) -> Result<Export, VerifyError> {
        let segments = list_segments(dir)?;
        // Start at the last segment that begins at or before `from`.
        let start = segments
            .partition_point(|(first, _)| *first <= from)
            .saturating_sub(1);
        let expected = segments.get(start).map_or(LeafIndex(0), |s| s.0);
        Ok(Export {
            segments,
            next_segment: start,
            reader: None,
            from: from.0,
            to: to.map_or(u64::MAX, |t| t.0),
            expected,
            finished: false,
        })
    }

    fn step(&mut self) -> Result<Option<ExportedRecord>, VerifyError> {
        loop {
            if self.reader.is_none() {
                let Some((first, path)) = self.segments.get(self.next_segment) else {
                    return Ok(None);
                };
                let name = segment_file_name(*first);
                check_continuity(&name, *first, self.expected)?;
                let file = File::open(path).map_err(|e| VerifyError::io(path, &e))?;
                let role = SegmentRole::of(self.next_segment, self.segments.len());
                self.reader = Some(SegmentReader::new(file, &name, Some(*first), role)?);
                self.next_segment += 1;
            }
            let Some(reader) = self.reader.as_mut() else {
                return Ok(None);
            };
            let file = segment_file_name(reader.first());
            let frame = match reader.next_frame()? {
                Some(f) => f,
                None => {
                    self.expected = reader.next_index();
                    self.reader = None;
                    continue;
                }
            };
            if frame.index.0 >= self.to {
                return Ok(None);
            }
            if frame.index.0 < self.from {
                continue;
            }
            let record = AuditRecord::decode(frame.payload).map_err(|e| SegmentError {
                file,
                offset: frame.offset,
                index: Some(frame.index),
                problem: Problem::BadRecord {
                    code: e.code(),
                    at: e.offset(),
                },
            })?;
            return Ok(Some(ExportedRecord {
                index: frame.index,
                bytes: frame.payload.to_vec(),
                record,
            }));
        }
    }
}

impl Iterator for Export {
    type Item = Result<ExportedRecord, VerifyError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.finished {
            return None;
        }
        match self.step() {
            Ok(Some(r)) => Some(Ok(r)),
            Ok(None) => {
                self.finished = true;
                None
            }
            Err(e) => {
                self.finished = true;
                Some(Err(e))
            }
        }
    }
}
