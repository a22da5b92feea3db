//! The hashes of every complete aligned subtree, on disk: `hashes/level-NN` holds, in order, the
//! 32-byte hashes of the subtrees of 2^NN leaves (`level-00` = leaf hashes). A proof is then
//! O(log n) reads with `read_at`, and memory stays bounded (a small direct-mapped cache).
//!
//! These files are derived: written after the records are durable, not synced on every batch
//! (they are synced before each checkpoint is signed), checked on open and rebuilt from the
//! segments when they are short or wrong.

use std::fs::{File, OpenOptions};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, RwLock};

use crate::Hash;
use crate::error::ReadError;
use crate::merkle::{NodeSource, node_hash};

/// The directory of hash files inside a log directory.
pub(crate) const HASHES_DIR: &str = "hashes";
const CACHE_SLOTS: usize = 4096;

#[derive(Debug, Clone, Copy)]
struct Slot {
    level: u32,
    index: u64,
    hash: Hash,
}

#[derive(Debug)]
pub(crate) struct HashStore {
    dir: PathBuf,
    files: RwLock<Vec<File>>,
    cache: Mutex<Vec<Option<Slot>>>,
}

fn level_name(level: usize) -> String {
    format!("level-{level:02}")
}

impl HashStore {
    pub(crate) fn open(log_dir: &Path) -> std::io::Result<HashStore> {
        let dir = log_dir.join(HASHES_DIR);
        std::fs::create_dir_all(&dir)?;
        let mut files = Vec::new();
        for level in 0..64 {
            let path = dir.join(level_name(level));
            if !path.exists() {
                break;
            }
            files.push(
                OpenOptions::new()
                    .read(true)
                    .write(true)
                    .truncate(false)
                    .open(&path)?,
            );
        }
        Ok(HashStore {
            dir,
            files: RwLock::new(files),
            cache: Mutex::new(vec![None; CACHE_SLOTS]),
        })
    }

    fn path(&self, level: usize) -> PathBuf {
        self.dir.join(level_name(level))
    }

    fn ensure_levels(&self, levels: usize) -> std::io::Result<()> {
        let mut files = self.files.write().unwrap_or_else(|e| e.into_inner());
        while files.len() < levels {
            let path = self.path(files.len());
            files.push(
                OpenOptions::new()
                    .read(true)
                    .write(true)
                    .create(true)
                    .truncate(false)
                    .open(&path)?,
            );
        }
        Ok(())
    }

    /// The number of whole hashes stored at each level.
    pub(crate) fn entries(&self) -> std::io::Result<Vec<u64>> {
        let files = self.files.read().unwrap_or_else(|e| e.into_inner());
        files.iter().map(|f| Ok(f.metadata()?.len() / 32)).collect()
    }

    /// The largest tree size whose every complete subtree is stored.
    pub(crate) fn valid_prefix(&self) -> std::io::Result<u64> {
        let entries = self.entries()?;
        let mut p = match entries.first() {
            None => return Ok(0),
            Some(&e) => e,
        };
        for (level, &e) in entries.iter().enumerate().skip(1) {
            // floor(p / 2^level) <= e  <=>  p <= (e + 1) * 2^level - 1
            let bound = (e.saturating_add(1))
                .checked_shl(level as u32)
                .map_or(u64::MAX, |b| b - 1);
            p = p.min(bound);
        }
        // Levels not stored at all must be above the tree: p < 2^levels.
        if entries.len() < 64 {
            p = p.min((1u64 << entries.len()) - 1);
        }
        Ok(p)
    }

    /// Cuts every level to what a tree of `size` leaves has.
    pub(crate) fn truncate(&self, size: u64) -> std::io::Result<()> {
        let files = self.files.read().unwrap_or_else(|e| e.into_inner());
        for (level, file) in files.iter().enumerate() {
            let keep = (size >> level) * 32;
            if file.metadata()?.len() != keep {
                file.set_len(keep)?;
            }
        }
        drop(files);
        let mut cache = self.cache.lock().unwrap_or_else(|e| e.into_inner());
        cache.iter_mut().for_each(|s| *s = None);
        Ok(())
    }

    /// Writes hashes `first..` of `level`, as consecutive 32-byte entries.
    pub(crate) fn write(&self, level: u32, first: u64, bytes: &[u8]) -> std::io::Result<()> {
        let level = level as usize;
        if self.files.read().unwrap_or_else(|e| e.into_inner()).len() <= level {
            self.ensure_levels(level + 1)?;
        }
        let files = self.files.read().unwrap_or_else(|e| e.into_inner());
        files[level].write_all_at(bytes, first * 32)
    }

    pub(crate) fn sync(&self) -> std::io::Result<()> {
        let files = self.files.read().unwrap_or_else(|e| e.into_inner());
        for f in files.iter() {
            f.sync_data()?;
        }
        Ok(())
    }

    fn slot(level: u32, index: u64) -> usize {
        let key = index.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ u64::from(level) << 58;
        (key >> 40) as usize % CACHE_SLOTS
    }

    /// Checks the last `count` entries of every level above 0 against their children.
    pub(crate) fn check_levels(&self, size: u64, count: u64) -> Result<bool, ReadError> {
        for level in 1..64u32 {
            let n = size >> level;
            if n == 0 {
                break;
            }
            for index in n.saturating_sub(count)..n {
                let left = self.node(level - 1, 2 * index)?;
                let right = self.node(level - 1, 2 * index + 1)?;
                if self.node(level, index)? != node_hash(&left, &right) {
                    return Ok(false);
                }
            }
        }
        Ok(true)
    }
}

impl NodeSource for HashStore {
    type Error = ReadError;

    fn node(&self, level: u32, index: u64) -> Result<Hash, ReadError> {
        let slot = Self::slot(level, index);
        {
            let cache = self.cache.lock().unwrap_or_else(|e| e.into_inner());
            if let Some(s) = cache[slot]
                && s.level == level
                && s.index == index
            {
                return Ok(s.hash);
            }
        }
        let files = self.files.read().unwrap_or_else(|e| e.into_inner());
        let file = files
            .get(level as usize)
            .ok_or_else(|| ReadError::Corrupt {
                path: self.path(level as usize),
                offset: 0,
                what: "hash file missing",
            })?;
        let mut hash = [0u8; 32];
        file.read_exact_at(&mut hash, index * 32).map_err(|e| {
            if e.kind() == std::io::ErrorKind::UnexpectedEof {
                ReadError::Corrupt {
                    path: self.path(level as usize),
                    offset: index * 32,
                    what: "hash file too short",
                }
            } else {
                ReadError::io(self.path(level as usize), &e)
            }
        })?;
        drop(files);
        let mut cache = self.cache.lock().unwrap_or_else(|e| e.into_inner());
        cache[slot] = Some(Slot { level, index, hash });
        Ok(hash)
    }
}

/// Collects the complete subtrees a run of appends makes, level by level, and writes each
/// level's run with one write.
#[derive(Debug, Default)]
pub(crate) struct LevelRuns {
    runs: Vec<(u64, Vec<u8>)>,
}

impl LevelRuns {
    pub(crate) fn add(&mut self, level: u32, index: u64, hash: &Hash) {
        let level = level as usize;
        while self.runs.len() <= level {
            self.runs.push((0, Vec::new()));
        }
        let (first, bytes) = &mut self.runs[level];
        if bytes.is_empty() {
            *first = index;
        }
        bytes.extend_from_slice(hash);
    }

    pub(crate) fn bytes(&self) -> usize {
        self.runs.iter().map(|(_, b)| b.len()).sum()
    }

    pub(crate) fn flush(&mut self, store: &HashStore) -> std::io::Result<()> {
        for (level, (first, bytes)) in self.runs.iter_mut().enumerate() {
            if !bytes.is_empty() {
                store.write(level as u32, *first, bytes)?;
                bytes.clear();
            }
        }
        Ok(())
    }
}
