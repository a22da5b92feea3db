//! The query index: derived from the records, rebuildable, with memory bounded as the log grows.
//!
//! `index/<kind>/<bucket, 2 hex digits>` (kinds `subject`, `consumer`, `provider`, `dataset`,
//! `purpose`; 256 buckets each) are append-only files of 16-byte entries: the key's hash (u64
//! LE: the first 8 bytes of SHA-256(kind || 0x00 || key)) and the leaf index (u64 LE), in leaf
//! order. The bucket is the hash's low byte. `index/time` holds each record's time (u64 LE per
//! leaf). A query reads one bucket (or the time column), then re-reads every candidate record
//! and compares the real fields, so a hash collision can never return a wrong record.
//!
//! Entries are buffered in memory (at most [`FLUSH_ENTRIES`]) and appended to the files in
//! bulk. `index/position` names the leaf count up to which the files were last synced (written
//! on close and every [`SYNC_EVERY`] records); on open, everything past it is cut and
//! re-indexed from the segments.

use std::fs::{File, OpenOptions};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};

use ring::digest::{SHA256, digest};

use crate::error::ReadError;
use crate::log::LogReader;
use crate::record::{RecordView, SubjectPseudonym};
use crate::{LeafIndex, TreeSize};

/// The index directory inside a log directory.
pub const INDEX_DIR: &str = "index";
const POSITION_FILE: &str = "position";
const TIME_FILE: &str = "time";
const KINDS: [&str; 5] = ["subject", "consumer", "provider", "dataset", "purpose"];
const BUCKETS: usize = 256;
const ENTRY: usize = 16;
/// Entries buffered before they are written out.
pub const FLUSH_ENTRIES: usize = 1 << 16;
/// Records between two sync points of the index files.
pub const SYNC_EVERY: u64 = 1 << 20;
/// Leaves per block of the in-memory time summary (min and max time of each block).
const TIME_BLOCK: u64 = 4096;

/// Which records to find. Every field given must match; `since..until` is a half-open range of
/// Unix nanoseconds. Results are leaf indexes in log order, after `after`, at most `limit`
/// (0: no limit).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Query {
    /// The subject's pseudonym.
    pub subject: Option<SubjectPseudonym>,
    /// The consumer agency.
    pub consumer: Option<String>,
    /// The provider agency.
    pub provider: Option<String>,
    /// The dataset.
    pub dataset: Option<String>,
    /// The purpose.
    pub purpose: Option<String>,
    /// Records at or after this time.
    pub since: Option<u64>,
    /// Records before this time.
    pub until: Option<u64>,
    /// The most results (0: all).
    pub limit: usize,
    /// Only records after this leaf (for paging).
    pub after: Option<LeafIndex>,
}

impl Query {
    fn keys(&self) -> [Option<&[u8]>; 5] {
        [
            self.subject.as_ref().map(|s| &s.0[..]),
            self.consumer.as_deref().map(str::as_bytes),
            self.provider.as_deref().map(str::as_bytes),
            self.dataset.as_deref().map(str::as_bytes),
            self.purpose.as_deref().map(str::as_bytes),
        ]
    }

    fn matches(&self, r: &RecordView<'_>) -> bool {
        let fields: [&[u8]; 5] = [
            &r.subject.0,
            r.consumer.as_bytes(),
            r.provider.as_bytes(),
            r.dataset.as_bytes(),
            r.purpose.as_bytes(),
        ];
        self.keys()
            .iter()
            .zip(fields)
            .all(|(want, have)| want.is_none_or(|w| w == have))
            && self.since.is_none_or(|s| r.time >= s)
            && self.until.is_none_or(|u| r.time < u)
    }
}

fn key_hash(kind: usize, key: &[u8]) -> u64 {
    let mut input = Vec::with_capacity(key.len() + 10);
    input.extend_from_slice(KINDS[kind].as_bytes());
    input.push(0);
    input.extend_from_slice(key);
    let d = digest(&SHA256, &input);
    let mut b = [0u8; 8];
    b.copy_from_slice(&d.as_ref()[..8]);
    u64::from_le_bytes(b)
}

#[derive(Debug)]
struct State {
    /// Records indexed (in files or pending).
    position: u64,
    /// Records whose entries are in the files.
    written: u64,
    /// Records covered by the last sync point.
    synced: u64,
    buckets: Vec<Option<File>>,
    pending: Vec<Vec<u8>>,
    pending_count: usize,
    time: File,
    pending_time: Vec<u8>,
    blocks: Vec<(u64, u64)>,
}

/// The index of a log (see the module's documentation).
#[derive(Debug)]
pub(crate) struct Index {
    dir: PathBuf,
    state: Mutex<State>,
    failed: AtomicBool,
}

fn entry_at(file: &File, i: u64) -> std::io::Result<(u64, u64)> {
    let mut b = [0u8; ENTRY];
    file.read_exact_at(&mut b, i * ENTRY as u64)?;
    let mut k = [0u8; 8];
    let mut l = [0u8; 8];
    k.copy_from_slice(&b[..8]);
    l.copy_from_slice(&b[8..]);
    Ok((u64::from_le_bytes(k), u64::from_le_bytes(l)))
}

/// The first of the `entries` entries whose leaf is at least `leaf` (entries are in leaf order).
fn lower_bound(file: &File, entries: u64, leaf: u64) -> std::io::Result<u64> {
    let (mut lo, mut hi) = (0u64, entries);
    while lo < hi {
        let mid = lo + (hi - lo) / 2;
        if entry_at(file, mid)?.1 < leaf {
            lo = mid + 1;
        } else {
            hi = mid;
        }
    }
    Ok(lo)
}

impl Index {
    /// Opens the index of a log of `size` records, cutting everything past its last sync point.
    pub(crate) fn open(log_dir: &Path, size: u64) -> std::io::Result<Index> {
        let dir = log_dir.join(INDEX_DIR);
        for kind in KINDS {
            std::fs::create_dir_all(dir.join(kind))?;
        }
        let position = match std::fs::read(dir.join(POSITION_FILE)) {
            Ok(b) if b.len() == 8 => {
                let mut a = [0u8; 8];
                a.copy_from_slice(&b);
                u64::from_le_bytes(a)
            }
            _ => 0,
        }
        .min(size);
        let time = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(dir.join(TIME_FILE))?;
        // A time column shorter than the position means the sync point lies: start over.
        let position = if time.metadata()?.len() / 8 < position {
            0
        } else {
            position
        };
        time.set_len(position * 8)?;
        let mut buckets = Vec::with_capacity(KINDS.len() * BUCKETS);
        for kind in KINDS {
            for b in 0..BUCKETS {
                let path = dir.join(kind).join(format!("{b:02x}"));
                let file = OpenOptions::new()
                    .read(true)
                    .write(true)
                    .create(true)
                    .truncate(false)
                    .open(&path)?;
                // Cut a partial entry and every entry past the sync point; a bucket that has
                // none (every bucket after a clean stop) is not written at all.
                let len = file.metadata()?.len();
                let whole = len / ENTRY as u64;
                let keep = if whole == 0 || entry_at(&file, whole - 1)?.1 < position {
                    whole
                } else {
                    lower_bound(&file, whole, position)?
                };
                if keep * ENTRY as u64 != len {
                    file.set_len(keep * ENTRY as u64)?;
                }
                buckets.push(Some(file));
            }
        }
        let mut blocks = Vec::new();
        let mut buf = vec![0u8; (TIME_BLOCK * 8) as usize];
        let mut at = 0u64;
        while at < position {
            let n = (position - at).min(TIME_BLOCK);
            let chunk = &mut buf[..(n * 8) as usize];
            time.read_exact_at(chunk, at * 8)?;
            let mut block = (u64::MAX, 0u64);
            for t in chunk.chunks_exact(8) {
                let mut a = [0u8; 8];
                a.copy_from_slice(t);
                let t = u64::from_le_bytes(a);
                block = (block.0.min(t), block.1.max(t));
            }
            blocks.push(block);
            at += n;
        }
        Ok(Index {
            dir,
            state: Mutex::new(State {
                position,
                written: position,
                synced: position,
                buckets,
                pending: vec![Vec::new(); KINDS.len() * BUCKETS],
                pending_count: 0,
                time,
                pending_time: Vec::new(),
                blocks,
            }),
            failed: AtomicBool::new(false),
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Marks the index as out of date after a failed update: queries refuse until reopened.
    pub(crate) fn fail(&self) {
        self.failed.store(true, Ordering::Release);
    }

    /// Whether an update failed.
    pub(crate) fn failed(&self) -> bool {
        self.failed.load(Ordering::Acquire)
    }

    /// The number of records indexed.
    pub(crate) fn position(&self) -> u64 {
        self.lock().position
    }

    /// Indexes record `index` (which must be the next one; others are ignored).
    pub(crate) fn add(&self, index: u64, record: &[u8]) -> std::io::Result<()> {
        let mut s = self.lock();
        self.add_locked(&mut s, index, record)
    }

    /// Indexes the records `start..` in order.
    pub(crate) fn add_batch(&self, start: u64, records: &[Vec<u8>]) -> std::io::Result<()> {
        let mut s = self.lock();
        for (i, record) in records.iter().enumerate() {
            self.add_locked(&mut s, start + i as u64, record)?;
        }
        Ok(())
    }

    fn add_locked(&self, s: &mut State, index: u64, record: &[u8]) -> std::io::Result<()> {
        if index != s.position {
            return Ok(());
        }
        // Records were validated before they were written; one that is not valid is indexed
        // under no key (the verifier reports it).
        let time = match RecordView::parse(record) {
            Ok(r) => {
                let keys: [&[u8]; 5] = [
                    &r.subject.0,
                    r.consumer.as_bytes(),
                    r.provider.as_bytes(),
                    r.dataset.as_bytes(),
                    r.purpose.as_bytes(),
                ];
                for (kind, key) in keys.iter().enumerate() {
                    let h = key_hash(kind, key);
                    let slot = kind * BUCKETS + (h & 0xff) as usize;
                    s.pending[slot].extend_from_slice(&h.to_le_bytes());
                    s.pending[slot].extend_from_slice(&index.to_le_bytes());
                }
                s.pending_count += keys.len();
                r.time
            }
            Err(_) => 0,
        };
        s.pending_time.extend_from_slice(&time.to_le_bytes());
        let block = (index / TIME_BLOCK) as usize;
        if s.blocks.len() <= block {
            s.blocks.push((u64::MAX, 0));
        }
        let b = &mut s.blocks[block];
        *b = (b.0.min(time), b.1.max(time));
        s.position += 1;
        if s.pending_count >= FLUSH_ENTRIES {
            Self::flush(s)?;
        }
        if s.position - s.synced >= SYNC_EVERY {
            self.sync_point(s)?;
        }
        Ok(())
    }

    fn flush(s: &mut State) -> std::io::Result<()> {
        for slot in 0..s.pending.len() {
            if s.pending[slot].is_empty() {
                continue;
            }
            if let Some(file) = &s.buckets[slot] {
                let end = file.metadata()?.len();
                file.write_all_at(&s.pending[slot], end)?;
            }
            s.pending[slot].clear();
        }
        s.pending_count = 0;
        if !s.pending_time.is_empty() {
            s.time.write_all_at(&s.pending_time, s.written * 8)?;
            s.pending_time.clear();
        }
        s.written = s.position;
        Ok(())
    }

    fn sync_point(&self, s: &mut State) -> std::io::Result<()> {
        Self::flush(s)?;
        for f in s.buckets.iter().flatten() {
            f.sync_data()?;
        }
        s.time.sync_data()?;
        crate::log::write_atomically(&self.dir, POSITION_FILE, &s.position.to_le_bytes())?;
        s.synced = s.position;
        Ok(())
    }

    /// Writes everything out and records a sync point (on close).
    pub(crate) fn close(&self) -> std::io::Result<()> {
        let mut s = self.lock();
        self.sync_point(&mut s)
    }

    /// The records matching `query` among the first `size`.
    pub(crate) fn query(
        &self,
        log: &LogReader<'_>,
        query: &Query,
        size: TreeSize,
    ) -> Result<Vec<LeafIndex>, ReadError> {
        if self.failed() {
            return Err(ReadError::Corrupt {
                path: self.dir.clone(),
                offset: 0,
                what: "an index update failed; the index is rebuilt on the next open",
            });
        }
        let limit = if query.limit == 0 {
            usize::MAX
        } else {
            query.limit
        };
        let start = query.after.map_or(0, |a| a.0.saturating_add(1));
        let mut s = self.lock();
        Self::flush(&mut s).map_err(|e| ReadError::io(&self.dir, &e))?;
        let end = size.0.min(s.position);
        let mut out = Vec::new();
        let check = |leaf: u64, out: &mut Vec<LeafIndex>| -> Result<bool, ReadError> {
            let bytes = log.read(LeafIndex(leaf))?;
            if let Ok(r) = RecordView::parse(&bytes)
                && query.matches(&r)
            {
                out.push(LeafIndex(leaf));
            }
            Ok(out.len() < limit)
        };
        if let Some((kind, key)) = query
            .keys()
            .iter()
            .enumerate()
            .find_map(|(k, v)| v.map(|v| (k, v)))
        {
            let h = key_hash(kind, key);
            let slot = kind * BUCKETS + (h & 0xff) as usize;
            let Some(file) = &s.buckets[slot] else {
                return Ok(out);
            };
            let path = self.dir.join(KINDS[kind]).join(format!("{:02x}", h & 0xff));
            let io = |e: std::io::Error| ReadError::io(&path, &e);
            let total = file.metadata().map_err(io)?.len() / ENTRY as u64;
            let mut at = lower_bound(file, total, start).map_err(io)?;
            let mut buf = vec![0u8; 4096 * ENTRY];
            'outer: while at < total {
                let n = (total - at).min(4096);
                let chunk = &mut buf[..n as usize * ENTRY];
                file.read_exact_at(chunk, at * ENTRY as u64).map_err(io)?;
                for e in chunk.chunks_exact(ENTRY) {
                    let mut k = [0u8; 8];
                    let mut l = [0u8; 8];
                    k.copy_from_slice(&e[..8]);
                    l.copy_from_slice(&e[8..]);
                    let leaf = u64::from_le_bytes(l);
                    if leaf >= end {
                        break 'outer;
                    }
                    if u64::from_le_bytes(k) == h && !check(leaf, &mut out)? {
                        break 'outer;
                    }
                }
                at += n;
            }
        } else if query.since.is_some() || query.until.is_some() {
            let since = query.since.unwrap_or(0);
            let until = query.until.unwrap_or(u64::MAX);
            let path = self.dir.join(TIME_FILE);
            let mut buf = vec![0u8; (TIME_BLOCK * 8) as usize];
            let first_block = start / TIME_BLOCK;
            'blocks: for (b, &(min, max)) in s.blocks.iter().enumerate().skip(first_block as usize)
            {
                if max < since || min >= until {
                    continue;
                }
                let from = (b as u64 * TIME_BLOCK).max(start);
                let to = ((b as u64 + 1) * TIME_BLOCK).min(end);
                if from >= to {
                    continue;
                }
                let chunk = &mut buf[..((to - from) * 8) as usize];
                s.time
                    .read_exact_at(chunk, from * 8)
                    .map_err(|e| ReadError::io(&path, &e))?;
                for (i, t) in chunk.chunks_exact(8).enumerate() {
                    let mut a = [0u8; 8];
                    a.copy_from_slice(t);
                    let t = u64::from_le_bytes(a);
                    if t >= since && t < until && !check(from + i as u64, &mut out)? {
                        break 'blocks;
                    }
                }
            }
        } else {
            for leaf in start..end {
                if !check(leaf, &mut out)? {
                    break;
                }
            }
        }
        Ok(out)
    }
}
