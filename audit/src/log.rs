//! The log: one writer thread with group commit, reads and proofs, and the checkpointer.
//!
//! `append` queues a record; the writer takes everything queued, frames it into one buffer,
//! writes it with one `write_all` and one `fdatasync`, then updates the hash files, the offsets
//! file and the frontier, and only then calls each record's `done`. The last segment is kept
//! extended with zeros ahead of its records (see [`Options::preallocate`]), so that a batch
//! normally writes inside the file's size and its `fdatasync` has no metadata to write; only
//! the last segment has such a zero tail (a segment is cut to its last frame before the next
//! one is created, and the last one at a clean close). Any write or sync error
//! poisons the log: that batch and every later append fail with `audit_unavailable`, and
//! `Options::on_fatal` is called once (sync errors are never retried: after a failed fsync the
//! kernel may have dropped the dirty pages, so a retry that succeeds proves nothing).

use std::collections::VecDeque;
use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex, RwLock};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crate::checkpoint::{Checkpoint, CheckpointSigner, VerifierKey};
use crate::error::{AppendError, FatalError, OpenError, ReadError};
use crate::hashes::{HashStore, LevelRuns};
use crate::index::{Index, Query};
use crate::merkle::{
    Frontier, NodeSource, ProofError, consistency_proof, inclusion_proof, leaf_hash, tree_root,
    verify_consistency,
};
use crate::record::{MAX_RECORD_LEN, RecordView};
use crate::segment::{
    FRAME_HEADER_LEN, Problem, SEGMENTS_DIR, SegmentError, SegmentReader, SegmentRole,
    check_continuity, create_segment, encode_frame, frame_len, list_segments, sync_dir,
};
use crate::{Hash, LeafIndex, TreeSize};

/// The file holding the latest signed checkpoint (contract).
pub const CHECKPOINT_FILE: &str = "checkpoint";
/// The directory of every signed checkpoint, by size.
pub const CHECKPOINTS_DIR: &str = "checkpoints";
/// The file holding the log's verifier key (contract).
pub const KEY_FILE: &str = "log.pub";
/// The directory where torn tails are set aside.
pub const TORN_DIR: &str = "torn";
/// The file of segment offsets, one u64 LE per leaf (derived).
pub const OFFSETS_FILE: &str = "offsets";
const LOCK_FILE: &str = "lock";
/// Leaves re-hashed on open to check the tail of the hash files.
const TAIL_CHECK: u64 = 1024;
/// The default of [`Options::preallocate`]: the batch that extends the file waits for this
/// many more bytes to reach the disk (about 0.8 ms on the machine measured), so it is kept
/// below the p99 acknowledgement latency; with 64 appends in flight that is one metadata sync
/// per some 30 batches instead of one per batch. 4 MiB saved no more CPU and its 2 ms showed
/// in the p99 (1.4 ms to 2.4 ms); 256 KiB saved less.
pub const PREALLOCATE: u64 = 1 << 20;
/// The zeros written per `write` when a segment is extended: larger writes of zeros were
/// slower per byte on the machine measured (a 4 MiB `pwrite` took 10 ms, four of 1 MiB 1 ms).
const ZERO_WRITE: usize = 256 << 10;

/// What `on_fatal` is given.
pub type FatalHook = Arc<dyn Fn(&FatalError) + Send + Sync>;

/// How the log is run.
#[derive(Clone)]
pub struct Options {
    /// A new segment is started when the current one would grow past this (default 64 MiB).
    pub segment_size: u64,
    /// The most records queued and not yet written; beyond it `append` answers
    /// [`AppendError::Busy`] (default 65,536).
    pub queue_capacity: usize,
    /// The log's signing key: when given, a checkpointer thread signs checkpoints.
    pub signer: Option<Arc<CheckpointSigner>>,
    /// How often the checkpointer looks for growth (default 1 s).
    pub checkpoint_interval: Duration,
    /// Called once when a write or sync fails and the log stops taking records.
    pub on_fatal: Option<FatalHook>,
    /// Keep the query index up to date (default true).
    pub index: bool,
    /// Group commit delay (default none): when the last batch held more than one record (so
    /// appends arrive concurrently), the writer takes the next batch no sooner than this long
    /// after the last one became durable, so that more records share its write and
    /// `fdatasync`. A sync costs the same for one record or a hundred; this trades a bounded
    /// wait for fewer of them under load, as PostgreSQL's `commit_delay` does. The time the
    /// records' `done` callbacks take counts towards it (a caller may do a batch's own work
    /// there, as the gateway signs its responses). Appends that arrive one at a time are never
    /// delayed.
    pub commit_delay: Duration,
    /// How far the last segment is extended with zero bytes at a time, ahead of its records
    /// (default [`PREALLOCATE`], 1 MiB; never past `segment_size`). A batch that writes
    /// inside the file's size needs no metadata in its `fdatasync` (on ext4 that is a second
    /// synchronous write per sync, the inode's); the batch that crosses the end pays for the
    /// next chunk's zeros and the size change, once per chunk. The zeros are written, not
    /// `fallocate`d: unwritten extents would need metadata on their first write. `0` grows
    /// the file with every batch instead, for copy-on-write filesystems (btrfs, ZFS) where
    /// writing in place saves nothing and the zeros only double the writes.
    pub preallocate: u64,
    /// Test seam: make the Nth data sync (counting from 1) fail as an I/O error would.
    #[doc(hidden)]
    pub fail_sync: Option<u64>,
}

impl Default for Options {
    fn default() -> Options {
        Options {
            segment_size: 64 << 20,
            queue_capacity: 65_536,
            signer: None,
            checkpoint_interval: Duration::from_secs(1),
            on_fatal: None,
            index: true,
            commit_delay: Duration::ZERO,
            preallocate: PREALLOCATE,
            fail_sync: None,
        }
    }
}

impl std::fmt::Debug for Options {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Options")
            .field("segment_size", &self.segment_size)
            .field("queue_capacity", &self.queue_capacity)
            .field("signer", &self.signer)
            .field("checkpoint_interval", &self.checkpoint_interval)
            .field("commit_delay", &self.commit_delay)
            .field("on_fatal", &self.on_fatal.as_ref().map(|_| "Fn"))
            .field("index", &self.index)
            .field("preallocate", &self.preallocate)
            .finish_non_exhaustive()
    }
}

/// Counters of the writer's work since open (for metrics, and to see group commit at work).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Stats {
    /// Records made durable.
    pub records: u64,
    /// Batches written (one `write_all` each, two at a segment boundary).
    pub batches: u64,
    /// Syncs of segments: `fdatasync` per batch, `fsync` when a segment is cut to its end.
    pub syncs: u64,
}

/// A durable record's place.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Appended {
    /// The record's leaf index.
    pub index: LeafIndex,
    /// The tree size once its batch was written (prove inclusion at this size or later).
    pub tree_size: TreeSize,
}

/// A torn tail set aside on open.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TornTail {
    /// The segment's file name.
    pub segment: String,
    /// Where the torn bytes started (the segment was cut there).
    pub offset: u64,
    /// How many bytes were set aside.
    pub bytes: u64,
    /// The copy of them.
    pub saved_to: PathBuf,
    /// What was wrong at `offset` (`truncated`, `bad_crc`, `bad_length`, `bad_header`).
    pub code: &'static str,
}

/// What the derived files needed on open.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Repair {
    /// Nothing: they matched the segments.
    None,
    /// They lagged behind and were completed from this leaf on.
    Extended {
        /// The first leaf added.
        from: LeafIndex,
    },
    /// They were wrong or missing and were rebuilt from the segments.
    Rebuilt,
}

/// What `open` found and did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Recovery {
    /// The records in the log.
    pub size: TreeSize,
    /// The number of segment files.
    pub segments: usize,
    /// A torn tail set aside, if there was one.
    pub torn: Option<TornTail>,
    /// The hash files.
    pub hashes: Repair,
    /// The offsets file.
    pub offsets: Repair,
    /// The size of the last signed checkpoint, checked against the tree.
    pub checkpoint: Option<TreeSize>,
}

struct Pending {
    record: Vec<u8>,
    done: Box<dyn FnOnce(Result<Appended, AppendError>) + Send>,
}

struct Queue {
    items: VecDeque<Pending>,
    closed: bool,
    /// The writer waits on `queue_cv` for work: the next append must wake it. While it
    /// writes (or sleeps out the commit delay) appends do not signal, sparing a system call each.
    writer_idle: bool,
}

#[derive(Debug, Clone)]
struct SegmentEntry {
    first: LeafIndex,
    name: String,
    file: Arc<File>,
}

#[derive(Debug, Clone, Copy)]
struct TreeState {
    size: TreeSize,
    root: Hash,
}

pub(crate) struct Shared {
    dir: PathBuf,
    queue: Mutex<Queue>,
    queue_cv: Condvar,
    capacity: usize,
    state: RwLock<TreeState>,
    hashes: HashStore,
    segments: RwLock<Vec<SegmentEntry>>,
    offsets: File,
    poisoned: AtomicBool,
    stats: Mutex<Stats>,
    fatal: Mutex<Option<String>>,
    on_fatal: Option<FatalHook>,
    signer: Option<Arc<CheckpointSigner>>,
    last_checkpoint: Mutex<Option<Checkpoint>>,
    stop: Mutex<bool>,
    stop_cv: Condvar,
    index: Option<Index>,
    feed: Mutex<IndexFeed>,
    /// Signals the indexer that work is queued (or that the feed is closed).
    feed_cv: Condvar,
    /// Signals the writer and queries that the indexer made progress.
    indexed_cv: Condvar,
    _lock: File,
}

/// Durable batches handed from the writer to the indexer thread, so that indexing never
/// delays a sync or an acknowledgement.
///
/// The indexer takes the feed in large batches: when [`INDEX_BATCH`] records wait, when a
/// query needs them (it sets `wanted`), or [`INDEX_LAG`] after the first of them arrived. Under
/// load that is one wake-up of the indexer for hundreds of records instead of one per group
/// commit (each wake-up is two context switches, as costly as indexing a few records).
struct IndexFeed {
    batches: VecDeque<(u64, Vec<Vec<u8>>)>,
    records: usize,
    /// A query waits for the index to catch up.
    wanted: bool,
    closed: bool,
}

/// Records that wake the indexer as soon as they wait.
const INDEX_BATCH: usize = 512;

/// How long records may wait for the indexer when fewer than [`INDEX_BATCH`] arrive and no
/// query asks for them.
const INDEX_LAG: Duration = Duration::from_millis(50);

/// The most records waiting for the indexer; beyond it the writer waits (memory stays bounded).
const MAX_FEED: usize = 1 << 18;

/// Stops the threads when the last handle goes.
struct Guard {
    shared: Arc<Shared>,
    threads: Mutex<Vec<JoinHandle<()>>>,
}

impl Drop for Guard {
    fn drop(&mut self) {
        {
            let mut q = self.shared.queue.lock().unwrap_or_else(|e| e.into_inner());
            q.closed = true;
        }
        self.shared.queue_cv.notify_all();
        {
            let mut stop = self.shared.stop.lock().unwrap_or_else(|e| e.into_inner());
            *stop = true;
        }
        self.shared.stop_cv.notify_all();
        let threads = std::mem::take(&mut *self.threads.lock().unwrap_or_else(|e| e.into_inner()));
        // The writer (first) finishes what was queued, then the indexer is told to finish.
        for (i, t) in threads.into_iter().enumerate() {
            // The last handle may be dropped by a `done` callback on the writer thread itself.
            if t.thread().id() != std::thread::current().id() {
                let _ = t.join();
            }
            if i == 0 {
                lock(&self.shared.feed).closed = true;
                self.shared.feed_cv.notify_all();
            }
        }
        // Derived files: a failure here is repaired on the next open.
        let _ = self.shared.hashes.sync();
        let _ = self.shared.offsets.sync_data();
        if let Some(index) = &self.shared.index {
            let _ = index.close();
        }
    }
}

/// The audit log. Cheap to clone and share between threads; the writer and checkpointer stop
/// when the last clone is dropped (after writing what was queued).
#[derive(Clone)]
pub struct AuditLog {
    shared: Arc<Shared>,
    _guard: Arc<Guard>,
}

impl std::fmt::Debug for AuditLog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AuditLog")
            .field("dir", &self.shared.dir)
            .field("size", &self.size())
            .finish_non_exhaustive()
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// Writes `bytes` to `dir/name` atomically: a temporary file, fsync, rename, fsync of `dir`.
pub(crate) fn write_atomically(dir: &Path, name: &str, bytes: &[u8]) -> std::io::Result<()> {
    let tmp = dir.join(format!(".{name}.tmp"));
    let mut f = File::create(&tmp)?;
    f.write_all(bytes)?;
    f.sync_all()?;
    drop(f);
    std::fs::rename(&tmp, dir.join(name))?;
    sync_dir(dir)
}

fn create_dir(path: &Path) -> Result<(), OpenError> {
    if !path.is_dir() {
        std::fs::create_dir_all(path).map_err(|e| OpenError::io(path, &e))?;
        if let Some(parent) = path.parent() {
            sync_dir(parent).map_err(|e| OpenError::io(parent, &e))?;
        }
    }
    Ok(())
}

impl AuditLog {
    /// Opens (or creates) the log in `dir`, recovering from a crash: a torn tail is set aside
    /// and cut; damage anywhere else, or disagreement with the signed checkpoint, refuses.
    pub fn open(
        dir: impl AsRef<Path>,
        options: Options,
    ) -> Result<(AuditLog, Recovery), OpenError> {
        let dir = dir.as_ref().to_path_buf();
        create_dir(&dir)?;
        for sub in [SEGMENTS_DIR, CHECKPOINTS_DIR, TORN_DIR] {
            create_dir(&dir.join(sub))?;
        }
        let lock_path = dir.join(LOCK_FILE);
        let lock_file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&lock_path)
            .map_err(|e| OpenError::io(&lock_path, &e))?;
        if lock_file.try_lock().is_err() {
            return Err(OpenError::Locked { path: lock_path });
        }
        let key = log_key(&dir, options.signer.as_deref())?;

        let offsets_path = dir.join(OFFSETS_FILE);
        let offsets = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&offsets_path)
            .map_err(|e| OpenError::io(&offsets_path, &e))?;

        // The last signed checkpoint, read before anything is repaired: `checkpoint`, or the
        // newest in `checkpoints/` if a crash came between writing that and replacing
        // `checkpoint`.
        let mut signed = latest_signed(&dir, key.as_ref())?;

        let scan = scan_segments(&dir, &offsets)?;
        let size = scan.size;
        if let Some(cp) = signed.last()
            && cp.size > size
        {
            return Err(OpenError::ShorterThanCheckpoint {
                log: size,
                checkpoint: cp.size,
            });
        }
        let torn = match scan.torn {
            Some(plan) => Some(plan.apply(&dir)?),
            None => None,
        };
        let mut segments = scan.segments;
        if segments.is_empty() {
            let (file, _) = create_segment(&dir, LeafIndex(0))
                .map_err(|e| OpenError::io(dir.join(SEGMENTS_DIR), &e))?;
            segments.push(SegmentEntry {
                first: LeafIndex(0),
                name: crate::segment::segment_file_name(LeafIndex(0)),
                file: Arc::new(file),
            });
        }

        let hashes = HashStore::open(&dir).map_err(|e| OpenError::io(dir.join("hashes"), &e))?;
        let mut hash_repair = recover_hashes(&dir, &hashes, &segments, &offsets, size, false)?;
        let frontier = Frontier::from_source(&hashes, size).map_err(read_to_open)?;

        // The tree must agree with the signed checkpoints.
        for cp in &signed {
            let mut root = tree_root(&hashes, cp.size).map_err(read_to_open)?;
            if root != cp.root && hash_repair != Repair::Rebuilt {
                // The hash files may be what is wrong: rebuild them from the records and look
                // again.
                hash_repair = recover_hashes(&dir, &hashes, &segments, &offsets, size, true)?;
                root = tree_root(&hashes, cp.size).map_err(read_to_open)?;
            }
            if root != cp.root {
                return Err(OpenError::CheckpointMismatch { size: cp.size });
            }
        }
        let checkpoint = signed.pop();
        let frontier = if hash_repair == Repair::Rebuilt {
            Frontier::from_source(&hashes, size).map_err(read_to_open)?
        } else {
            frontier
        };

        let index = if options.index {
            let index_dir = dir.join(crate::index::INDEX_DIR);
            let index = Index::open(&dir, size.0).map_err(|e| OpenError::io(&index_dir, &e))?;
            let segs: Vec<(LeafIndex, String, Arc<File>)> = segments
                .iter()
                .map(|s| (s.first, s.name.clone(), s.file.clone()))
                .collect();
            let from = index.position();
            if from < size.0 {
                stream_records(&dir, &segs, &offsets, from, |i, payload| {
                    index
                        .add(i, payload)
                        .map_err(|e| OpenError::io(&index_dir, &e))?;
                    Ok(true)
                })?;
            }
            Some(index)
        } else {
            None
        };

        let last = segments.last().cloned().ok_or_else(|| OpenError::Io {
            path: dir.join(SEGMENTS_DIR),
            kind: std::io::ErrorKind::NotFound,
        })?;
        let seg_path = dir.join(SEGMENTS_DIR).join(&last.name);
        let seg_file = OpenOptions::new()
            .write(true)
            .open(&seg_path)
            .map_err(|e| OpenError::io(&seg_path, &e))?;
        // The zero tail of a log that was not closed cleanly is reused as it is.
        let seg_file_len = seg_file
            .metadata()
            .map_err(|e| OpenError::io(&seg_path, &e))?
            .len();
        let seg_len = scan
            .last_end
            .unwrap_or(crate::segment::HEADER_LEN as u64)
            .min(seg_file_len);

        let recovery = Recovery {
            size,
            segments: segments.len(),
            torn,
            hashes: hash_repair,
            offsets: scan.offsets,
            checkpoint: checkpoint.as_ref().map(|c| c.size),
        };
        let shared = Arc::new(Shared {
            dir: dir.clone(),
            queue: Mutex::new(Queue {
                items: VecDeque::new(),
                closed: false,
                writer_idle: false,
            }),
            queue_cv: Condvar::new(),
            capacity: options.queue_capacity.max(1),
            state: RwLock::new(TreeState {
                size,
                root: frontier.root(),
            }),
            hashes,
            segments: RwLock::new(segments),
            offsets,
            poisoned: AtomicBool::new(false),
            stats: Mutex::new(Stats::default()),
            fatal: Mutex::new(None),
            on_fatal: options.on_fatal.clone(),
            signer: options.signer.clone(),
            last_checkpoint: Mutex::new(checkpoint),
            stop: Mutex::new(false),
            stop_cv: Condvar::new(),
            index,
            feed: Mutex::new(IndexFeed {
                batches: VecDeque::new(),
                records: 0,
                wanted: false,
                closed: false,
            }),
            feed_cv: Condvar::new(),
            indexed_cv: Condvar::new(),
            _lock: lock_file,
        });
        if let Some(signer) = &shared.signer {
            let key_text = format!("{}\n", signer.verifier_key());
            if !dir.join(KEY_FILE).exists() {
                write_atomically(&dir, KEY_FILE, key_text.as_bytes())
                    .map_err(|e| OpenError::io(dir.join(KEY_FILE), &e))?;
            }
        }

        let writer = Writer {
            shared: shared.clone(),
            segment: seg_file,
            segment_first: last.first,
            segment_len: seg_len,
            segment_file_len: seg_file_len,
            preallocate: options.preallocate,
            zeros: Vec::new(),
            next: size.0,
            frontier,
            limit: options.segment_size.max(1),
            commit_delay: options.commit_delay,
            last_batch: 0,
            last_durable: Instant::now(),
            buf: Vec::with_capacity(1 << 20),
            offsets_buf: Vec::new(),
            syncs: 0,
            fail_sync: options.fail_sync,
        };
        let mut threads = Vec::new();
        threads.push(
            std::thread::Builder::new()
                .name("audit-writer".into())
                .spawn(move || writer.run())
                .map_err(|e| OpenError::io(&dir, &e))?,
        );
        if shared.index.is_some() {
            let s = shared.clone();
            threads.push(
                std::thread::Builder::new()
                    .name("audit-indexer".into())
                    .spawn(move || indexer(s))
                    .map_err(|e| OpenError::io(&dir, &e))?,
            );
        }
        if shared.signer.is_some() {
            let s = shared.clone();
            let interval = options.checkpoint_interval;
            threads.push(
                std::thread::Builder::new()
                    .name("audit-checkpointer".into())
                    .spawn(move || checkpointer(s, interval))
                    .map_err(|e| OpenError::io(&dir, &e))?,
            );
        }
        let guard = Arc::new(Guard {
            shared: shared.clone(),
            threads: Mutex::new(threads),
        });
        Ok((
            AuditLog {
                shared,
                _guard: guard,
            },
            recovery,
        ))
    }

    /// Queues a record (the bytes of [`crate::AuditRecord::encode`]). `done` is called exactly
    /// once: with the record's place once it is durable, or with the error. Immediate refusals
    /// (`audit_busy` when the queue is full, `audit_record_invalid`, `audit_unavailable` once
    /// poisoned, `audit_closed`) call it before `append` returns, on the caller's thread.
    /// Back-pressure is a refusal, not a wait, so an async caller never blocks its executor.
    pub fn append(
        &self,
        record: Vec<u8>,
        done: impl FnOnce(Result<Appended, AppendError>) + Send + 'static,
    ) {
        if let Err(e) = RecordView::validate(&record) {
            return done(Err(AppendError::InvalidRecord(e)));
        }
        if self.shared.poisoned.load(Ordering::Acquire) {
            return done(Err(self.shared.failed()));
        }
        let mut q = lock(&self.shared.queue);
        if q.closed {
            drop(q);
            return done(Err(AppendError::Closed));
        }
        if q.items.len() >= self.shared.capacity {
            drop(q);
            return done(Err(AppendError::Busy));
        }
        q.items.push_back(Pending {
            record,
            done: Box::new(done),
        });
        let wake = std::mem::take(&mut q.writer_idle);
        drop(q);
        if wake {
            self.shared.queue_cv.notify_one();
        }
    }

    /// Appends and waits until the record is durable.
    pub fn append_wait(&self, record: Vec<u8>) -> Result<Appended, AppendError> {
        let (tx, rx) = std::sync::mpsc::sync_channel(1);
        self.append(record, move |r| {
            let _ = tx.send(r);
        });
        rx.recv().unwrap_or(Err(AppendError::Closed))
    }

    /// The number of durable records.
    pub fn size(&self) -> TreeSize {
        self.shared.state().size
    }

    /// The root of the tree of all durable records.
    pub fn root(&self) -> Hash {
        self.shared.state().root
    }

    /// The root of the tree of the first `size` records.
    pub fn root_at(&self, size: TreeSize) -> Result<Hash, ReadError> {
        let current = self.size();
        if size > current {
            return Err(ProofError::BadSizes {
                old: size.0,
                new: current.0,
            }
            .into());
        }
        tree_root(&self.shared.hashes, size)
    }

    /// The inclusion proof of leaf `index` in the tree of `size` records.
    pub fn inclusion_proof(
        &self,
        index: LeafIndex,
        size: TreeSize,
    ) -> Result<Vec<Hash>, ReadError> {
        let current = self.size();
        if size > current {
            return Err(ProofError::BadSizes {
                old: size.0,
                new: current.0,
            }
            .into());
        }
        inclusion_proof(&self.shared.hashes, index, size)
    }

    /// The consistency proof between the trees of `old` and `new` records.
    pub fn consistency_proof(&self, old: TreeSize, new: TreeSize) -> Result<Vec<Hash>, ReadError> {
        let current = self.size();
        if new > current {
            return Err(ProofError::BadSizes {
                old: old.0,
                new: new.0,
            }
            .into());
        }
        consistency_proof(&self.shared.hashes, old, new)
    }

    /// The exact stored bytes of record `index`.
    pub fn read_record(&self, index: LeafIndex) -> Result<Vec<u8>, ReadError> {
        LogReader(&self.shared).read(index)
    }

    /// The leaf hash of record `index`.
    pub fn leaf_hash(&self, index: LeafIndex) -> Result<Hash, ReadError> {
        let size = self.size();
        if index.0 >= size.0 {
            return Err(ReadError::NotFound { index, size });
        }
        self.shared.hashes.node(0, index.0)
    }

    /// The latest signed checkpoint, if any.
    pub fn latest_checkpoint(&self) -> Option<Checkpoint> {
        lock(&self.shared.last_checkpoint).clone()
    }

    /// Signs a checkpoint of the current tree now, if it grew since the last one (after
    /// checking that it is consistent with it). `None` without a signer or on an empty log.
    pub fn checkpoint_now(&self) -> Result<Option<Checkpoint>, ReadError> {
        self.shared.checkpoint()
    }

    /// The verifier key of the log's signer, if one is configured.
    pub fn verifier_key(&self) -> Option<VerifierKey> {
        self.shared
            .signer
            .as_ref()
            .map(|s| s.verifier_key().clone())
    }

    /// What the writer has done since open.
    pub fn stats(&self) -> Stats {
        *lock(&self.shared.stats)
    }

    /// Whether a write or sync failed: the log takes no more records.
    pub fn is_poisoned(&self) -> bool {
        self.shared.poisoned.load(Ordering::Acquire)
    }

    /// The leaf indexes of the records matching `query`, in log order. Candidates come from
    /// the derived index and every one is checked against the record itself. Records indexed
    /// up to the last batch the indexer has seen (it follows the writer closely).
    pub fn query(&self, query: &Query) -> Result<Vec<LeafIndex>, ReadError> {
        let Some(index) = &self.shared.index else {
            return Err(ReadError::Corrupt {
                path: self.shared.dir.join(crate::index::INDEX_DIR),
                offset: 0,
                what: "the index is turned off in Options",
            });
        };
        let size = self.size();
        // Every acknowledged record is found: wait for the indexer to reach them.
        self.shared.wait_indexed(index, size);
        index.query(&LogReader(&self.shared), query, size)
    }

    /// The log's directory.
    pub fn dir(&self) -> &Path {
        &self.shared.dir
    }
}

fn read_to_open(e: ReadError) -> OpenError {
    match e {
        ReadError::Io { path, kind } => OpenError::Io { path, kind },
        other => OpenError::Read(other),
    }
}

/// `checkpoint` and the newest file of `checkpoints/`, each verified with `key`, the largest
/// last.
fn latest_signed(dir: &Path, key: Option<&VerifierKey>) -> Result<Vec<Checkpoint>, OpenError> {
    let mut candidates = Vec::new();
    let latest = dir.join(CHECKPOINT_FILE);
    if latest.exists() {
        candidates.push(latest);
    }
    let cp_dir = dir.join(CHECKPOINTS_DIR);
    let mut newest: Option<(u64, PathBuf)> = None;
    for entry in std::fs::read_dir(&cp_dir).map_err(|e| OpenError::io(&cp_dir, &e))? {
        let entry = entry.map_err(|e| OpenError::io(&cp_dir, &e))?;
        let name = entry.file_name();
        let Some(size) = name
            .to_str()
            .filter(|n| n.len() == 20 && n.bytes().all(|b| b.is_ascii_digit()))
            .and_then(|n| n.parse::<u64>().ok())
        else {
            continue; // temporary files of an interrupted write; the verifier reports others
        };
        if newest.as_ref().is_none_or(|(s, _)| size > *s) {
            newest = Some((size, entry.path()));
        }
    }
    candidates.extend(newest.map(|(_, p)| p));
    let mut signed = Vec::with_capacity(2);
    for path in candidates {
        let key = key.ok_or_else(|| OpenError::NoKey { file: path.clone() })?;
        let note = std::fs::read_to_string(&path).map_err(|e| OpenError::io(&path, &e))?;
        signed.push(
            Checkpoint::verify(&note, key).map_err(|source| OpenError::Checkpoint {
                file: path.clone(),
                source,
            })?,
        );
    }
    signed.sort_by_key(|c| c.size);
    Ok(signed)
}

/// The log's key: the signer's (and `log.pub` must agree), or `log.pub`'s.
fn log_key(
    dir: &Path,
    signer: Option<&CheckpointSigner>,
) -> Result<Option<VerifierKey>, OpenError> {
    let path = dir.join(KEY_FILE);
    let stored = if path.exists() {
        let text = std::fs::read_to_string(&path).map_err(|e| OpenError::io(&path, &e))?;
        Some(
            VerifierKey::parse(&text).map_err(|source| OpenError::Checkpoint {
                file: path.clone(),
                source,
            })?,
        )
    } else {
        None
    };
    match (signer, stored) {
        (Some(signer), Some(stored)) if *signer.verifier_key() != stored => {
            Err(OpenError::KeyMismatch)
        }
        (Some(signer), _) => Ok(Some(signer.verifier_key().clone())),
        (None, stored) => Ok(stored),
    }
}

impl Shared {
    fn state(&self) -> TreeState {
        *self.state.read().unwrap_or_else(|e| e.into_inner())
    }

    fn failed(&self) -> AppendError {
        let what = lock(&self.fatal).clone().unwrap_or_default();
        AppendError::Failed(what)
    }

    fn poison(&self, fatal: &FatalError) {
        if !self.poisoned.swap(true, Ordering::AcqRel) {
            *lock(&self.fatal) = Some(fatal.to_string());
            if let Some(hook) = &self.on_fatal {
                hook(fatal);
            }
        }
    }

    fn checkpoint(&self) -> Result<Option<Checkpoint>, ReadError> {
        let Some(signer) = &self.signer else {
            return Ok(None);
        };
        let mut last = lock(&self.last_checkpoint);
        let state = self.state();
        if state.size.0 == 0 || last.as_ref().is_some_and(|c| c.size >= state.size) {
            return Ok(last.clone());
        }
        let fatal = |what: String, kind| {
            let f = FatalError { what, kind };
            self.poison(&f);
            ReadError::Checkpoint(f.to_string())
        };
        // What is signed is what is on disk: the hash files' root must be the writer's.
        let stored_root = tree_root(&self.hashes, state.size)?;
        if stored_root != state.root {
            return Err(fatal(
                format!("hash files disagree with the tree at size {}", state.size),
                std::io::ErrorKind::InvalidData,
            ));
        }
        if let Some(prev) = last.as_ref() {
            let proof = consistency_proof(&self.hashes, prev.size, state.size)?;
            if verify_consistency(prev.size, state.size, &prev.root, &state.root, &proof).is_err() {
                return Err(fatal(
                    format!(
                        "tree of size {} is not consistent with the checkpoint of size {}",
                        state.size, prev.size
                    ),
                    std::io::ErrorKind::InvalidData,
                ));
            }
        }
        self.hashes
            .sync()
            .map_err(|e| fatal("sync of the hash files".into(), e.kind()))?;
        let note = signer.sign(state.size, &state.root);
        let dir = self.dir.join(CHECKPOINTS_DIR);
        let name = format!("{:020}", state.size.0);
        write_atomically(&dir, &name, note.as_bytes())
            .map_err(|e| fatal(format!("writing checkpoints/{name}"), e.kind()))?;
        write_atomically(&self.dir, CHECKPOINT_FILE, note.as_bytes())
            .map_err(|e| fatal("writing checkpoint".into(), e.kind()))?;
        let cp = Checkpoint {
            origin: signer.name().to_owned(),
            size: state.size,
            root: state.root,
            note,
        };
        *last = Some(cp.clone());
        Ok(Some(cp))
    }
}

impl Shared {
    fn feed_index(&self, start: u64, records: Vec<Vec<u8>>) {
        let mut feed = lock(&self.feed);
        while feed.records >= MAX_FEED && !feed.closed {
            feed = self
                .indexed_cv
                .wait(feed)
                .unwrap_or_else(|e| e.into_inner());
        }
        let first = feed.batches.is_empty();
        feed.records += records.len();
        feed.batches.push_back((start, records));
        let wake = first || feed.records >= INDEX_BATCH;
        drop(feed);
        // The first batch starts the indexer's lag; it is woken again once enough wait.
        if wake {
            self.feed_cv.notify_one();
        }
    }

    fn wait_indexed(&self, index: &Index, size: TreeSize) {
        let mut feed = lock(&self.feed);
        while index.position() < size.0 && !feed.closed && !index.failed() {
            // Asked again after each wake-up: the records may have been fed after the
            // indexer's last take.
            if !feed.wanted {
                feed.wanted = true;
                self.feed_cv.notify_one();
            }
            feed = self
                .indexed_cv
                .wait_timeout(feed, Duration::from_millis(100))
                .unwrap_or_else(|e| e.into_inner())
                .0;
        }
    }
}

/// Indexes the durable batches the writer hands over. The index is derived: a failure here
/// is repaired on the next open.
fn indexer(shared: Arc<Shared>) {
    let Some(index) = &shared.index else {
        return;
    };
    loop {
        let work = {
            let mut feed = lock(&shared.feed);
            while feed.batches.is_empty() && !feed.closed {
                feed = shared.feed_cv.wait(feed).unwrap_or_else(|e| e.into_inner());
            }
            if feed.batches.is_empty() {
                return;
            }
            // Records wait: let more join them, unless enough are here or someone needs them.
            let until = Instant::now() + INDEX_LAG;
            while feed.records < INDEX_BATCH && !feed.wanted && !feed.closed {
                let left = until.saturating_duration_since(Instant::now());
                if left.is_zero() {
                    break;
                }
                feed = shared
                    .feed_cv
                    .wait_timeout(feed, left)
                    .unwrap_or_else(|e| e.into_inner())
                    .0;
            }
            feed.records = 0;
            feed.wanted = false;
            std::mem::take(&mut feed.batches)
        };
        for (start, records) in work {
            if index.add_batch(start, &records).is_err() {
                // Queries now refuse (and stop waiting); the next open rebuilds the index.
                index.fail();
            }
        }
        let _guard = lock(&shared.feed);
        shared.indexed_cv.notify_all();
    }
}

fn checkpointer(shared: Arc<Shared>, interval: Duration) {
    loop {
        {
            let stop = lock(&shared.stop);
            let (stop, _) = shared
                .stop_cv
                .wait_timeout_while(stop, interval, |s| !*s)
                .unwrap_or_else(|e| e.into_inner());
            if *stop {
                return;
            }
        }
        if shared.poisoned.load(Ordering::Acquire) {
            return;
        }
        // Errors poison the log inside `checkpoint`; nothing more to do here.
        let _ = shared.checkpoint();
    }
}

/// Reads records of the live log (for the index and `read_record`).
pub(crate) struct LogReader<'a>(&'a Shared);

impl LogReader<'_> {
    pub(crate) fn read(&self, index: LeafIndex) -> Result<Vec<u8>, ReadError> {
        let shared = self.0;
        let size = shared.state().size;
        if index.0 >= size.0 {
            return Err(ReadError::NotFound { index, size });
        }
        let offsets_path = || shared.dir.join(OFFSETS_FILE);
        let mut off = [0u8; 8];
        shared
            .offsets
            .read_exact_at(&mut off, index.0 * 8)
            .map_err(|e| ReadError::io(offsets_path(), &e))?;
        let offset = u64::from_le_bytes(off);
        let entry = {
            let segs = shared.segments.read().unwrap_or_else(|e| e.into_inner());
            let pos = segs.partition_point(|s| s.first <= index);
            match pos.checked_sub(1).and_then(|p| segs.get(p)) {
                Some(e) => e.clone(),
                None => {
                    return Err(ReadError::NotFound { index, size });
                }
            }
        };
        let path = shared.dir.join(SEGMENTS_DIR).join(&entry.name);
        let corrupt = |what| ReadError::Corrupt {
            path: path.clone(),
            offset,
            what,
        };
        let mut head = [0u8; FRAME_HEADER_LEN];
        entry
            .file
            .read_exact_at(&mut head, offset)
            .map_err(|_| corrupt("no frame at the offset the offsets file gives"))?;
        let len = u32::from_le_bytes([head[0], head[1], head[2], head[3]]) as usize;
        if len == 0 || len > MAX_RECORD_LEN {
            return Err(corrupt("bad frame length"));
        }
        let mut frame = vec![0u8; frame_len(len)];
        entry
            .file
            .read_exact_at(&mut frame, offset)
            .map_err(|_| corrupt("frame runs past the end of the segment"))?;
        let mut idx = [0u8; 8];
        idx.copy_from_slice(&frame[4..12]);
        let stored = u32::from_le_bytes([frame[12], frame[13], frame[14], frame[15]]);
        let crc = crc32c::crc32c_append(crc32c::crc32c(&frame[..12]), &frame[FRAME_HEADER_LEN..]);
        if crc != stored {
            return Err(corrupt("frame CRC does not match"));
        }
        if u64::from_le_bytes(idx) != index.0 {
            return Err(corrupt("frame holds another leaf"));
        }
        frame.drain(..FRAME_HEADER_LEN);
        Ok(frame)
    }
}

/// Calls a caller's `done` on the writer thread. A callback that panics must not take the
/// writer down with it (every later append would wait forever): its panic is contained.
fn answer(
    done: Box<dyn FnOnce(Result<Appended, AppendError>) + Send>,
    result: Result<Appended, AppendError>,
) {
    let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(move || done(result)));
}

struct Writer {
    shared: Arc<Shared>,
    segment: File,
    segment_first: LeafIndex,
    /// Where the next frame goes: the end of the last record.
    segment_len: u64,
    /// The file's size: `segment_len` and the zero tail written ahead of it.
    segment_file_len: u64,
    preallocate: u64,
    /// Zeros to write from (allocated on first use).
    zeros: Vec<u8>,
    next: u64,
    frontier: Frontier,
    limit: u64,
    commit_delay: Duration,
    /// Records in the last batch written.
    last_batch: usize,
    /// When the last batch became durable (before its callbacks ran).
    last_durable: Instant,
    buf: Vec<u8>,
    offsets_buf: Vec<u8>,
    syncs: u64,
    fail_sync: Option<u64>,
}

impl Writer {
    fn run(mut self) {
        loop {
            let batch: Vec<Pending> = {
                let mut q = lock(&self.shared.queue);
                while q.items.is_empty() && !q.closed {
                    q.writer_idle = true;
                    q = self
                        .shared
                        .queue_cv
                        .wait(q)
                        .unwrap_or_else(|e| e.into_inner());
                }
                q.writer_idle = false;
                if q.items.is_empty() {
                    drop(q);
                    self.close();
                    return;
                }
                let wait = self
                    .commit_delay
                    .saturating_sub(self.last_durable.elapsed());
                if self.last_batch > 1 && !wait.is_zero() && !q.closed {
                    // Appends arrive concurrently: let the ones on their way join this batch.
                    drop(q);
                    std::thread::sleep(wait);
                    q = lock(&self.shared.queue);
                }
                q.items.drain(..).collect()
            };
            self.last_batch = batch.len();
            self.process(batch);
        }
    }

    fn process(&mut self, batch: Vec<Pending>) {
        if self.shared.poisoned.load(Ordering::Acquire) {
            let err = self.shared.failed();
            for p in batch {
                answer(p.done, Err(err.clone()));
            }
            return;
        }
        let start = self.next;
        match self.write(&batch) {
            Ok(size) => {
                self.last_durable = Instant::now();
                let mut records = Vec::with_capacity(batch.len());
                for (i, p) in batch.into_iter().enumerate() {
                    let Pending { record, done } = p;
                    answer(
                        done,
                        Ok(Appended {
                            index: LeafIndex(start + i as u64),
                            tree_size: size,
                        }),
                    );
                    records.push(record);
                }
                if self.shared.index.is_some() {
                    self.shared.feed_index(start, records);
                }
            }
            Err(fatal) => {
                self.shared.poison(&fatal);
                let err = self.shared.failed();
                for p in batch {
                    answer(p.done, Err(err.clone()));
                }
            }
        }
    }

    /// `fdatasync`, or `fsync` when the file's size shrank (`with_size`).
    fn sync(&mut self, with_size: bool) -> std::io::Result<()> {
        self.syncs += 1;
        if self.fail_sync == Some(self.syncs) {
            return Err(std::io::Error::other("injected sync failure"));
        }
        if with_size {
            self.segment.sync_all()
        } else {
            self.segment.sync_data()
        }
    }

    /// A clean close cuts the zero tail, so that a closed log's segments all end at their
    /// last frame, as before preallocation (the next open extends it again, once). Not after a
    /// failure: a poisoned log's files are not written again. A failed cut leaves a zero tail,
    /// which is valid.
    fn close(&mut self) {
        if self.shared.poisoned.load(Ordering::Acquire) || self.segment_file_len <= self.segment_len
        {
            return;
        }
        if self.segment.set_len(self.segment_len).is_ok() {
            let _ = self.segment.sync_all();
        }
    }

    /// Where the zero tail ends once the records reach `end`: the next multiple of the
    /// chunk, never past the segment size limit (unless one record alone is larger).
    fn zero_tail_end(&self, end: u64) -> u64 {
        if self.preallocate == 0 || end <= self.segment_file_len {
            return end.max(self.segment_file_len);
        }
        let chunk_end = end
            .div_ceil(self.preallocate)
            .saturating_mul(self.preallocate);
        chunk_end.min(self.limit).max(end)
    }

    /// Writes zeros from `from` to `to`.
    fn write_zeros(&mut self, from: u64, to: u64) -> Result<(), FatalError> {
        if self.zeros.is_empty() {
            self.zeros = vec![0u8; ZERO_WRITE];
        }
        let mut at = from;
        while at < to {
            let n = (to - at).min(ZERO_WRITE as u64) as usize;
            self.segment
                .write_all_at(&self.zeros[..n], at)
                .map_err(|e| self.fatal("zero-filling", &e))?;
            at += n as u64;
        }
        Ok(())
    }

    fn segment_name(&self) -> String {
        crate::segment::segment_file_name(self.segment_first)
    }

    fn fatal(&self, what: &str, e: &std::io::Error) -> FatalError {
        FatalError {
            what: format!("{what} segments/{}", self.segment_name()),
            kind: e.kind(),
        }
    }

    /// Writes the buffered frames to the current segment and syncs it. A batch that passes the
    /// end of the file extends it with the next chunk of zeros first, in the same sync. With
    /// `seal` (the segment is full) the file is cut to its last frame instead, and that is
    /// synced too before any later segment exists.
    fn flush(&mut self, seal: bool) -> Result<(), FatalError> {
        let end = self.segment_len + self.buf.len() as u64;
        if !self.buf.is_empty() {
            self.segment
                .write_all_at(&self.buf, self.segment_len)
                .map_err(|e| self.fatal("write to", &e))?;
            let tail_end = if seal { end } else { self.zero_tail_end(end) };
            let zeros_from = end.max(self.segment_file_len);
            if tail_end > zeros_from {
                self.write_zeros(zeros_from, tail_end)?;
            }
            self.segment_file_len = self.segment_file_len.max(tail_end);
        }
        let cut = seal && self.segment_file_len > end;
        if cut {
            self.segment
                .set_len(end)
                .map_err(|e| self.fatal("cutting", &e))?;
            self.segment_file_len = end;
        }
        if !self.buf.is_empty() || cut {
            let what = if cut { "fsync of" } else { "fdatasync of" };
            self.sync(cut).map_err(|e| self.fatal(what, &e))?;
        }
        self.segment_len = end;
        self.buf.clear();
        Ok(())
    }

    fn rotate(&mut self, first: LeafIndex) -> Result<(), FatalError> {
        let (file, _) = create_segment(&self.shared.dir, first).map_err(|e| FatalError {
            what: format!(
                "creating segments/{}",
                crate::segment::segment_file_name(first)
            ),
            kind: e.kind(),
        })?;
        let reader = file.try_clone().map_err(|e| self.fatal("reopening", &e))?;
        self.segment = file;
        self.segment_first = first;
        self.segment_len = crate::segment::HEADER_LEN as u64;
        self.segment_file_len = self.segment_len;
        self.shared
            .segments
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .push(SegmentEntry {
                first,
                name: crate::segment::segment_file_name(first),
                file: Arc::new(reader),
            });
        Ok(())
    }

    /// Makes the batch durable, then updates the derived files and the tree. Returns the new
    /// tree size.
    fn write(&mut self, batch: &[Pending]) -> Result<TreeSize, FatalError> {
        self.buf.clear();
        self.offsets_buf.clear();
        let start = self.next;
        let header_only = crate::segment::HEADER_LEN as u64;
        for (i, p) in batch.iter().enumerate() {
            let index = LeafIndex(start + i as u64);
            let len = frame_len(p.record.len()) as u64;
            let used = self.segment_len + self.buf.len() as u64;
            if used > header_only && used + len > self.limit {
                self.flush(true)?;
                self.rotate(index)?;
            }
            let at = self.segment_len + self.buf.len() as u64;
            self.offsets_buf.extend_from_slice(&at.to_le_bytes());
            encode_frame(index, &p.record, &mut self.buf);
        }
        self.flush(false)?;
        // Durable from here on.
        self.shared
            .offsets
            .write_all_at(&self.offsets_buf, start * 8)
            .map_err(|e| FatalError {
                what: "write to offsets".into(),
                kind: e.kind(),
            })?;
        let mut runs = LevelRuns::default();
        for p in batch {
            self.frontier
                .append(leaf_hash(&p.record), |l, i, h| runs.add(l, i, h));
        }
        runs.flush(&self.shared.hashes).map_err(|e| FatalError {
            what: "write to the hash files".into(),
            kind: e.kind(),
        })?;
        self.next = start + batch.len() as u64;
        {
            let mut stats = lock(&self.shared.stats);
            stats.records += batch.len() as u64;
            stats.batches += 1;
            stats.syncs = self.syncs;
        }
        let size = TreeSize(self.next);
        *self.shared.state.write().unwrap_or_else(|e| e.into_inner()) = TreeState {
            size,
            root: self.frontier.root(),
        };
        Ok(size)
    }
}

struct Scan {
    size: TreeSize,
    segments: Vec<SegmentEntry>,
    /// Where the records of the last segment kept end (its zero tail, if any, follows).
    last_end: Option<u64>,
    torn: Option<TornPlan>,
    offsets: Repair,
}

/// A torn tail found by the scan, to be set aside.
struct TornPlan {
    name: String,
    path: PathBuf,
    offset: u64,
    /// The torn bytes (without the zero tail after a torn frame).
    torn: Vec<u8>,
    code: &'static str,
}

impl TornPlan {
    /// Copies the torn bytes to `torn/`, then cuts the segment at their offset, zero tail and
    /// all (or removes it, when its header was torn).
    fn apply(self, dir: &Path) -> Result<TornTail, OpenError> {
        let file = OpenOptions::new()
            .write(true)
            .open(&self.path)
            .map_err(|e| OpenError::io(&self.path, &e))?;
        let tail = set_aside(
            dir,
            &self.name,
            &file,
            &self.path,
            self.offset,
            &self.torn,
            self.code,
        )?;
        if self.offset == 0 {
            drop(file);
            std::fs::remove_file(&self.path).map_err(|e| OpenError::io(&self.path, &e))?;
            let seg_dir = dir.join(SEGMENTS_DIR);
            sync_dir(&seg_dir).map_err(|e| OpenError::io(&seg_dir, &e))?;
        }
        Ok(tail)
    }
}

/// Checks the offsets file against the frames as they are read, and rewrites it from the
/// first difference.
struct OffsetsCheck<'a> {
    file: &'a File,
    stored: u64,
    reader: std::io::BufReader<File>,
    pending: Vec<u8>,
    pending_from: u64,
    repair: Repair,
}

impl<'a> OffsetsCheck<'a> {
    fn new(file: &'a File, path: &Path) -> Result<OffsetsCheck<'a>, OpenError> {
        let len = file.metadata().map_err(|e| OpenError::io(path, &e))?.len();
        let mut clone = file.try_clone().map_err(|e| OpenError::io(path, &e))?;
        clone
            .seek(SeekFrom::Start(0))
            .map_err(|e| OpenError::io(path, &e))?;
        Ok(OffsetsCheck {
            file,
            stored: len / 8,
            reader: std::io::BufReader::with_capacity(1 << 16, clone),
            pending: Vec::new(),
            pending_from: 0,
            repair: Repair::None,
        })
    }

    fn frame(&mut self, index: u64, offset: u64, path: &Path) -> Result<(), OpenError> {
        if index < self.stored {
            let mut b = [0u8; 8];
            let ok = self.reader.read_exact(&mut b).is_ok() && u64::from_le_bytes(b) == offset;
            if ok {
                return Ok(());
            }
            self.stored = index;
            self.repair = Repair::Rebuilt;
        }
        if self.pending.is_empty() {
            self.pending_from = index;
            if self.repair == Repair::None {
                self.repair = Repair::Extended {
                    from: LeafIndex(index),
                };
            }
        }
        self.pending.extend_from_slice(&offset.to_le_bytes());
        if self.pending.len() >= 1 << 20 {
            self.flush(path)?;
        }
        Ok(())
    }

    fn flush(&mut self, path: &Path) -> Result<(), OpenError> {
        if !self.pending.is_empty() {
            self.file
                .write_all_at(&self.pending, self.pending_from * 8)
                .map_err(|e| OpenError::io(path, &e))?;
            self.pending_from += self.pending.len() as u64 / 8;
            self.pending.clear();
        }
        Ok(())
    }

    fn finish(mut self, size: u64, path: &Path) -> Result<Repair, OpenError> {
        self.flush(path)?;
        if self
            .file
            .metadata()
            .map_err(|e| OpenError::io(path, &e))?
            .len()
            != size * 8
        {
            self.file
                .set_len(size * 8)
                .map_err(|e| OpenError::io(path, &e))?;
        }
        Ok(self.repair)
    }
}

/// Whether a valid frame (length in bounds, CRC right, a later index) starts anywhere in
/// `bytes`: if one does, damage before it is not a torn tail.
fn valid_frame_after(bytes: &[u8], after: LeafIndex) -> bool {
    let mut at = 0;
    while at + FRAME_HEADER_LEN < bytes.len() {
        let b = &bytes[at..];
        let len = u32::from_le_bytes([b[0], b[1], b[2], b[3]]) as usize;
        let mut idx = [0u8; 8];
        idx.copy_from_slice(&b[4..12]);
        let index = u64::from_le_bytes(idx);
        let plausible = len > 0
            && len <= MAX_RECORD_LEN
            && FRAME_HEADER_LEN + len <= b.len()
            && index >= after.0
            && index - after.0 < 1 << 32;
        if plausible {
            let stored = u32::from_le_bytes([b[12], b[13], b[14], b[15]]);
            let crc = crc32c::crc32c_append(
                crc32c::crc32c(&b[..12]),
                &b[FRAME_HEADER_LEN..FRAME_HEADER_LEN + len],
            );
            if crc == stored {
                return true;
            }
        }
        at += 1;
    }
    false
}

/// The length of the torn bytes at the start of `rest` (the last segment from the damaged
/// frame on), or `None` if they are not what a writer that stopped leaves: a frame cut short,
/// then at most the zero tail it writes ahead. A frame whose CRC fails must be followed by
/// zeros only; a frame cut short or of an impossible length runs to the end of the file.
fn torn_len(problem: &Problem, offset: u64, rest: &[u8]) -> Option<usize> {
    match problem {
        Problem::BadCrc { frame_end } => {
            let len = usize::try_from(frame_end.checked_sub(offset)?).ok()?;
            rest.get(len..)?.iter().all(|&b| b == 0).then_some(len)
        }
        _ => Some(rest.len()),
    }
}

/// Reads every segment: names, headers, frames, CRCs and index order. A torn tail of the last
/// segment is copied to `torn/` and cut off; any other damage refuses. Only the last segment
/// may end in a zero tail.
fn scan_segments(dir: &Path, offsets: &File) -> Result<Scan, OpenError> {
    let list = list_segments(dir)?;
    let offsets_path = dir.join(OFFSETS_FILE);
    let mut check = OffsetsCheck::new(offsets, &offsets_path)?;
    let mut expected = LeafIndex(0);
    let mut segments = Vec::with_capacity(list.len());
    let mut last_end = None;
    let mut torn = None;
    let count = list.len();
    for (i, (first, path)) in list.into_iter().enumerate() {
        let name = crate::segment::segment_file_name(first);
        check_continuity(&name, first, expected)?;
        let role = SegmentRole::of(i, count);
        let is_last = role == SegmentRole::Last;
        let file = File::open(&path).map_err(|e| OpenError::io(&path, &e))?;
        let mut end = 0;
        let failure = match SegmentReader::new(&file, &name, Some(first), role) {
            Err(e) => Some(e),
            Ok(mut reader) => loop {
                match reader.next_frame() {
                    Ok(Some(frame)) => {
                        let (index, offset) = (frame.index.0, frame.offset);
                        check.frame(index, offset, &offsets_path)?;
                    }
                    Ok(None) => {
                        expected = reader.next_index();
                        end = reader.offset();
                        break None;
                    }
                    Err(e) => {
                        expected = reader.next_index();
                        end = reader.offset();
                        break Some(e);
                    }
                }
            },
        };
        let keep = match failure {
            None => true,
            Some(e) => {
                let tearable = matches!(
                    e.problem,
                    Problem::Truncated
                        | Problem::BadCrc { .. }
                        | Problem::BadLength { .. }
                        | Problem::BadHeader
                );
                if !is_last || !tearable {
                    return Err(e.into());
                }
                let mut rest = Vec::new();
                let mut f = &file;
                f.seek(SeekFrom::Start(e.offset))
                    .and_then(|_| f.read_to_end(&mut rest))
                    .map_err(|err| OpenError::io(&path, &err))?;
                let search_from = if e.offset == 0 {
                    rest.get(crate::segment::HEADER_LEN..).unwrap_or(&[])
                } else {
                    rest.get(1..).unwrap_or(&[])
                };
                if valid_frame_after(search_from, expected) {
                    return Err(e.into());
                }
                let Some(len) = torn_len(&e.problem, e.offset, &rest) else {
                    return Err(e.into());
                };
                rest.truncate(len);
                // Applied only once the checkpoint has been compared: nothing is cut from a
                // log that is refused.
                torn = Some(TornPlan {
                    name: name.clone(),
                    path: path.clone(),
                    offset: e.offset,
                    torn: rest,
                    code: e.code(),
                });
                // A segment whose header itself was torn holds nothing: it goes.
                e.offset != 0
            }
        };
        if keep {
            last_end = Some(end);
            segments.push(SegmentEntry {
                first,
                name,
                file: Arc::new(file),
            });
        }
    }
    let offsets_repair = check.finish(expected.0, &offsets_path)?;
    Ok(Scan {
        size: TreeSize(expected.0),
        segments,
        last_end,
        torn,
        offsets: offsets_repair,
    })
}

fn set_aside(
    dir: &Path,
    name: &str,
    file: &File,
    path: &Path,
    offset: u64,
    bytes: &[u8],
    code: &'static str,
) -> Result<TornTail, OpenError> {
    let torn_dir = dir.join(TORN_DIR);
    let stamp = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let saved_to = torn_dir.join(format!("{stamp}-{name}-{offset}"));
    let mut out = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .open(&saved_to)
        .map_err(|e| OpenError::io(&saved_to, &e))?;
    out.write_all(bytes)
        .and_then(|_| out.sync_all())
        .map_err(|e| OpenError::io(&saved_to, &e))?;
    sync_dir(&torn_dir).map_err(|e| OpenError::io(&torn_dir, &e))?;
    file.set_len(offset)
        .and_then(|_| file.sync_all())
        .map_err(|e| OpenError::io(path, &e))?;
    Ok(TornTail {
        segment: name.to_owned(),
        offset,
        bytes: bytes.len() as u64,
        saved_to,
        code,
    })
}

/// Streams the records from leaf `from` to the end, calling `f` with each index and payload.
pub(crate) fn stream_records(
    dir: &Path,
    segments: &[(LeafIndex, String, Arc<File>)],
    offsets: &File,
    from: u64,
    mut f: impl FnMut(u64, &[u8]) -> Result<bool, OpenError>,
) -> Result<(), OpenError> {
    let seg_dir = dir.join(SEGMENTS_DIR);
    let pos = segments.partition_point(|(first, _, _)| first.0 <= from);
    let Some(start) = pos.checked_sub(1) else {
        return Ok(());
    };
    for (i, (first, name, file)) in segments.iter().enumerate().skip(start) {
        let path = seg_dir.join(name);
        let mut handle = file.try_clone().map_err(|e| OpenError::io(&path, &e))?;
        let (offset, next) = if i == start && from > first.0 {
            let mut off = [0u8; 8];
            offsets
                .read_exact_at(&mut off, from * 8)
                .map_err(|e| OpenError::io(dir.join(OFFSETS_FILE), &e))?;
            (u64::from_le_bytes(off), LeafIndex(from))
        } else {
            (crate::segment::HEADER_LEN as u64, *first)
        };
        handle
            .seek(SeekFrom::Start(offset))
            .map_err(|e| OpenError::io(&path, &e))?;
        let role = SegmentRole::of(i, segments.len());
        let mut reader = SegmentReader::at(handle, name, *first, offset, next, role);
        while let Some(frame) = reader.next_frame()? {
            if !f(frame.index.0, frame.payload)? {
                return Ok(());
            }
        }
    }
    Ok(())
}

/// Brings the hash files to `size`: checks their tail against the records (and each level
/// against the one below), completes them from the records, or rebuilds them all.
fn recover_hashes(
    dir: &Path,
    hashes: &HashStore,
    segments: &[SegmentEntry],
    offsets: &File,
    size: TreeSize,
    force_rebuild: bool,
) -> Result<Repair, OpenError> {
    let hashes_dir = dir.join(crate::hashes::HASHES_DIR);
    let io = |e: std::io::Error| OpenError::io(&hashes_dir, &e);
    let segs: Vec<(LeafIndex, String, Arc<File>)> = segments
        .iter()
        .map(|s| (s.first, s.name.clone(), s.file.clone()))
        .collect();
    let mut prefix = if force_rebuild {
        0
    } else {
        hashes.valid_prefix().map_err(io)?.min(size.0)
    };
    hashes.truncate(prefix).map_err(io)?;
    if prefix > 0 {
        let levels_ok = hashes.check_levels(prefix, 64).map_err(read_to_open)?;
        let mut tail_ok = levels_ok;
        if levels_ok {
            let from = prefix.saturating_sub(TAIL_CHECK);
            stream_records(dir, &segs, offsets, from, |index, payload| {
                if index >= prefix {
                    return Ok(false);
                }
                let stored = hashes.node(0, index).map_err(read_to_open)?;
                if stored != leaf_hash(payload) {
                    tail_ok = false;
                    return Ok(false);
                }
                Ok(true)
            })?;
        }
        if !tail_ok {
            prefix = 0;
            hashes.truncate(0).map_err(io)?;
        }
    }
    if prefix == size.0 {
        return Ok(if force_rebuild {
            Repair::Rebuilt
        } else {
            Repair::None
        });
    }
    let repair = if prefix == 0 {
        Repair::Rebuilt
    } else {
        Repair::Extended {
            from: LeafIndex(prefix),
        }
    };
    let mut frontier = Frontier::from_source(hashes, TreeSize(prefix)).map_err(read_to_open)?;
    let mut runs = LevelRuns::default();
    let mut failed = None;
    stream_records(dir, &segs, offsets, prefix, |index, payload| {
        if index >= size.0 {
            return Ok(false);
        }
        frontier.append(leaf_hash(payload), |l, i, h| runs.add(l, i, h));
        if runs.bytes() >= 4 << 20
            && let Err(e) = runs.flush(hashes)
        {
            failed = Some(e);
            return Ok(false);
        }
        Ok(true)
    })?;
    if let Some(e) = failed {
        return Err(io(e));
    }
    runs.flush(hashes).map_err(io)?;
    if frontier.size() != size {
        return Err(OpenError::Io {
            path: dir.join(SEGMENTS_DIR),
            kind: std::io::ErrorKind::UnexpectedEof,
        });
    }
    Ok(repair)
}

impl From<SegmentError> for ReadError {
    fn from(e: SegmentError) -> ReadError {
        ReadError::Corrupt {
            path: PathBuf::from(SEGMENTS_DIR).join(e.file),
            offset: e.offset,
            what: e.problem.code(),
        }
    }
}
