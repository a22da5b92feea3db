//! The gateway's secrets on disk: the key of the `hash` transform and the key subjects'
//! pseudonyms are made with. Both are files of hex digits (at least 64: 32 bytes), made by
//! `isnad up` for a local federation and by the operator for a deployment, the same on every
//! node.

use std::path::Path;

use isnad_audit::SubjectPseudonym;

/// Reads a file of hex digits (surrounding whitespace ignored) as bytes.
pub(crate) fn read_hex_key(path: &Path, what: &str) -> anyhow::Result<Vec<u8>> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| anyhow::anyhow!("{what} {}: {e}", path.display()))?;
    let hex = text.trim();
    let bytes = (0..hex.len())
        .step_by(2)
        .map(|i| {
            hex.get(i..i + 2)
                .and_then(|pair| u8::from_str_radix(pair, 16).ok())
        })
        .collect::<Option<Vec<u8>>>()
        .filter(|_| hex.len() % 2 == 0)
        .ok_or_else(|| anyhow::anyhow!("{what} {}: not hex digits", path.display()))?;
    anyhow::ensure!(
        bytes.len() >= 32,
        "{what} {}: at least 64 hex digits (32 bytes) are needed, the file has {}",
        path.display(),
        bytes.len() * 2
    );
    Ok(bytes)
}

/// Writes `path` with 32 random bytes as hex (mode 0600) unless it exists, so the secret stays
/// the same across runs.
pub(crate) fn ensure_hex_key(path: &Path) -> anyhow::Result<()> {
    if path.exists() {
        return Ok(());
    }
    let mut secret = [0u8; 32];
    ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut secret)
        .map_err(|_| anyhow::anyhow!("the system random generator failed"))?;
    let hex: String = secret.iter().map(|b| format!("{b:02x}")).collect();
    write_private(path, format!("{hex}\n").as_bytes())
}

/// Writes `path` with a new Ed25519 key (PKCS#8 DER, mode 0600) unless it exists: the audit
/// log's checkpoint key and the provenance key.
pub(crate) fn ensure_ed25519_key(path: &Path) -> anyhow::Result<()> {
    if path.exists() {
        return Ok(());
    }
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent)
            .map_err(|e| anyhow::anyhow!("cannot create {}: {e}", parent.display()))?;
    }
    let pkcs8 = ring::signature::Ed25519KeyPair::generate_pkcs8(&ring::rand::SystemRandom::new())
        .map_err(|_| anyhow::anyhow!("the system random generator failed"))?;
    write_private(path, pkcs8.as_ref())
}

/// Creates `path` (it must not exist) readable by its owner only, and syncs it.
pub(crate) fn write_private(path: &Path, content: &[u8]) -> anyhow::Result<()> {
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut file = options
        .open(path)
        .map_err(|e| anyhow::anyhow!("cannot create {}: {e}", path.display()))?;
    std::io::Write::write_all(&mut file, content)?;
    file.sync_all()?;
    Ok(())
}

/// The key subjects' pseudonyms are made with: [`isnad_audit::pseudonym`], HMAC-SHA256(key,
/// subject). The shared state and the audit log only ever hold pseudonyms, never the IDs
/// requests name. Its `Debug` shows no key (the `Pseudonymizer`'s hides it).
#[derive(Clone, Debug)]
pub struct PseudonymKey(isnad_audit::Pseudonymizer);

impl PseudonymKey {
    /// Reads the key file.
    pub fn from_file(path: &Path) -> anyhow::Result<PseudonymKey> {
        let key = read_hex_key(path, "pseudonym key")?;
        Ok(PseudonymKey(isnad_audit::Pseudonymizer::new(&key)))
    }

    /// The pseudonym of `subject`.
    pub fn of(&self, subject: &str) -> SubjectPseudonym {
        self.0.of(subject)
    }

    /// The pseudonym of `subject` as lowercase hex.
    pub fn hex(&self, subject: &str) -> String {
        isnad_audit::hex(&self.of(subject).0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_hex_keys_and_refuses_short_or_malformed_ones() {
        let dir = tempfile::tempdir().expect("dir");
        let path = dir.path().join("k");
        std::fs::write(&path, format!("{}\n", "ab".repeat(32))).expect("write");
        assert_eq!(read_hex_key(&path, "key").expect("valid"), vec![0xab; 32]);
        for bad in ["ab".repeat(31), "zz".repeat(32), "abc".to_owned()] {
            std::fs::write(&path, bad).expect("write");
            assert!(read_hex_key(&path, "key").is_err());
        }
    }

    #[test]
    fn a_pseudonym_is_keyed_and_never_the_subject() {
        let dir = tempfile::tempdir().expect("dir");
        let (a, b) = (dir.path().join("a"), dir.path().join("b"));
        ensure_hex_key(&a).expect("key a");
        ensure_hex_key(&b).expect("key b");
        let first = std::fs::read(&a).expect("read");
        ensure_hex_key(&a).expect("kept");
        assert_eq!(
            std::fs::read(&a).expect("read"),
            first,
            "an existing key is kept"
        );
        let (ka, kb) = (
            PseudonymKey::from_file(&a).expect("a"),
            PseudonymKey::from_file(&b).expect("b"),
        );
        let subject = "784197912761950";
        assert_eq!(ka.hex(subject), ka.hex(subject));
        assert_ne!(
            ka.hex(subject),
            kb.hex(subject),
            "another key, another pseudonym"
        );
        assert!(!ka.hex(subject).contains(subject));
        assert_eq!(ka.hex(subject).len(), 64);
    }
}
