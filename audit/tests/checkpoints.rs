//! Checkpoints: the C2SP formats byte for byte (against Go's sumdb/note example and by hand),
//! strict parsing, and the checkpointer's files.

mod common;

use std::time::{Duration, Instant};

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use common::*;
use isnad_audit::checkpoint::checkpoint_body;
use isnad_audit::{AuditLog, Checkpoint, CheckpointSigner, Options, TreeSize, VerifierKey};
use ring::digest::{SHA256, digest};
use ring::signature::{ED25519, UnparsedPublicKey};

// The example of golang.org/x/mod/sumdb/note (its package documentation and note_test.go).
const GO_KEY: &str = "PeterNeumann+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW";
const GO_PRIVATE: &str =
    "PRIVATE+KEY+PeterNeumann+c74f20a3+AYEKFALVFGyNhPJEMzD1QIDr+Y7hfZx09iUvxdXHKDFz";
const GO_TEXT: &str = "If you think cryptography is the answer to your problem,\n\
                       then you don't know what your problem is.\n";
const GO_NOTE_SIG: &str = "\u{2014} PeterNeumann x08go/ZJkuBS9UG/SffcvIAQxVBtiFupLLr8pAcElZInNIuGUgYN1FFYC2pZSNXgKvqfqdngotpRZb6KE6RyyBwJnAM=\n";

fn go_note() -> String {
    format!("{GO_TEXT}\n{GO_NOTE_SIG}")
}

/// The PKCS#8 v2 document ring reads, for an Ed25519 seed and its public key.
fn pkcs8(seed: &[u8], public: &[u8]) -> Vec<u8> {
    let mut der = vec![
        0x30, 0x53, 0x02, 0x01, 0x01, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x04, 0x22, 0x04,
        0x20,
    ];
    der.extend_from_slice(seed);
    der.extend_from_slice(&[0xa1, 0x23, 0x03, 0x21, 0x00]);
    der.extend_from_slice(public);
    der
}

fn go_signer() -> CheckpointSigner {
    let seed = STANDARD
        .decode(GO_PRIVATE.splitn(5, '+').nth(4).expect("key"))
        .expect("base64");
    assert_eq!(seed[0], 1, "Ed25519");
    let key = VerifierKey::parse(GO_KEY).expect("key");
    CheckpointSigner::from_pkcs8("PeterNeumann", &pkcs8(&seed[1..], key.public_key()))
        .expect("signer")
}

#[test]
fn the_go_sumdb_note_example_verifies() {
    let key = VerifierKey::parse(GO_KEY).expect("parses");
    assert_eq!(key.name(), "PeterNeumann");
    assert_eq!(isnad_audit::hex(&key.key_id()), "c74f20a3");
    assert_eq!(key.to_string(), GO_KEY);
    assert_eq!(key.open(&go_note()).expect("verifies"), GO_TEXT);
}

#[test]
fn signing_the_go_example_reproduces_its_note_byte_for_byte() {
    let signer = go_signer();
    assert_eq!(signer.verifier_key().to_string(), GO_KEY);
    assert_eq!(signer.sign_note(GO_TEXT), go_note());
}

#[test]
fn a_checkpoint_is_the_tlog_body_and_a_signature_line_checked_by_hand() {
    let signer = signer();
    let root = [0x5a; 32];
    let note = signer.sign(TreeSize(1234), &root);
    let body = format!("{ORIGIN}\n1234\n{}\n", STANDARD.encode(root));
    assert_eq!(checkpoint_body(ORIGIN, TreeSize(1234), &root), body);
    // By hand: the body, a blank line, one signature line.
    let (text, sig_line) = note.split_at(body.len());
    assert_eq!(text, body);
    let sig_line = sig_line.strip_prefix('\n').expect("blank line");
    let sig_line = sig_line.strip_suffix('\n').expect("final newline");
    assert!(
        sig_line.as_bytes().starts_with(&[0xE2, 0x80, 0x94, 0x20]),
        "em dash, space"
    );
    let rest = &sig_line["\u{2014} ".len()..];
    let (name, b64) = rest.split_once(' ').expect("name and signature");
    assert_eq!(name, ORIGIN);
    let raw = STANDARD.decode(b64).expect("base64");
    assert_eq!(raw.len(), 68);
    let public = signer.verifier_key().public_key().to_vec();
    let mut id_input = ORIGIN.as_bytes().to_vec();
    id_input.push(0x0A);
    id_input.push(0x01);
    id_input.extend_from_slice(&public);
    assert_eq!(&raw[..4], &digest(&SHA256, &id_input).as_ref()[..4]);
    UnparsedPublicKey::new(&ED25519, &public)
        .verify(body.as_bytes(), &raw[4..])
        .expect("the signature covers the body with its final newline");
    // The verifier key text: name+hex(key id)+base64(0x01 || key).
    let mut typed = vec![0x01];
    typed.extend_from_slice(&public);
    assert_eq!(
        signer.verifier_key().to_string(),
        format!(
            "{ORIGIN}+{}+{}",
            isnad_audit::hex(&raw[..4]),
            STANDARD.encode(typed)
        )
    );
    let cp = Checkpoint::verify(&note, signer.verifier_key()).expect("verifies");
    assert_eq!((cp.size, cp.root), (TreeSize(1234), root));
}

#[test]
fn malformed_verifier_keys_are_refused_with_codes() {
    let good = VerifierKey::parse(GO_KEY).expect("good");
    assert_eq!(
        VerifierKey::parse(&format!("{GO_KEY}\n")).expect("trimmed"),
        good
    );
    for bad in [
        "PeterNeumann+c74f20a4+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW",
        "PeterNeumann+c74f20a3+AhpcQcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW",
        "PeterNeumann+c74f20a3",
        "PeterNeumann+c74f20+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW",
        "PeterNeumann+c74f20a3+not base64",
    ] {
        assert_eq!(
            VerifierKey::parse(bad).expect_err(bad).code(),
            "bad_verifier_key",
            "{bad}"
        );
    }
    assert_eq!(
        VerifierKey::parse("Peter Neumann+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW")
            .expect_err("space")
            .code(),
        "bad_key_name"
    );
    assert_eq!(
        CheckpointSigner::from_pkcs8(ORIGIN, b"not a key")
            .expect_err("bad")
            .code(),
        "bad_signing_key"
    );
}

fn verify_code(note: &str, key: &VerifierKey) -> &'static str {
    Checkpoint::verify(note, key).expect_err("refused").code()
}

#[test]
fn malformed_and_unsigned_notes_are_refused_with_codes() {
    let signer = signer();
    let key = signer.verifier_key();
    let note = signer.sign(TreeSize(5), &[1; 32]);
    assert_eq!(
        verify_code(&note.replace("\n\n", "\n"), key),
        "note_malformed"
    );
    assert_eq!(verify_code(note.trim_end(), key), "note_malformed");
    assert_eq!(
        verify_code(&note.replace('\u{2014}', "-"), key),
        "note_malformed"
    );
    assert_eq!(verify_code(&format!("\r{note}"), key), "note_malformed");
    // Signed by another key only.
    let other = self::signer();
    assert_eq!(verify_code(&note, other.verifier_key()), "note_not_signed");
    // A key with the log's name and another public key: same name, other key ID: not signed.
    let impostor =
        CheckpointSigner::from_pkcs8(ORIGIN, &CheckpointSigner::generate_pkcs8().expect("key"))
            .expect("signer");
    assert_eq!(
        verify_code(&note, impostor.verifier_key()),
        "note_not_signed"
    );
    // A signature by the log's key over other text.
    let other_note = signer.sign(TreeSize(6), &[1; 32]);
    let forged = format!(
        "{}{}",
        &note[..note.find("\n\n").expect("split") + 2],
        &other_note[other_note.find("\n\n").expect("split") + 2..]
    );
    assert_eq!(verify_code(&forged, key), "note_bad_signature");
    // An extra signature by an unknown key is ignored.
    let cosigned = format!(
        "{note}{}",
        &other.sign(TreeSize(5), &[1; 32])[note.find("\n\n").expect("split") + 2..]
    );
    assert_eq!(
        Checkpoint::verify(&cosigned, key)
            .expect("still signed")
            .size,
        TreeSize(5)
    );
    // Body syntax, each signed properly.
    let body = |b: &str| signer.sign_note(b);
    assert_eq!(
        verify_code(
            &body(&format!("{ORIGIN}\n05\n{}\n", STANDARD.encode([1; 32]))),
            key
        ),
        "checkpoint_malformed"
    );
    assert_eq!(
        verify_code(
            &body(&format!("{ORIGIN}\n5\n{}\n", STANDARD.encode([1; 31]))),
            key
        ),
        "checkpoint_malformed"
    );
    assert_eq!(
        verify_code(
            &body(&format!("{ORIGIN}\n-5\n{}\n", STANDARD.encode([1; 32]))),
            key
        ),
        "checkpoint_malformed"
    );
    assert_eq!(
        verify_code(&body(&format!("{ORIGIN}\n5\n")), key),
        "checkpoint_malformed"
    );
    assert_eq!(
        verify_code(
            &body(&format!("other/log\n5\n{}\n", STANDARD.encode([1; 32]))),
            key
        ),
        "checkpoint_wrong_origin"
    );
    // Extension lines are allowed by the spec.
    let ext = body(&format!(
        "{ORIGIN}\n5\n{}\nextension\n",
        STANDARD.encode([1; 32])
    ));
    assert_eq!(
        Checkpoint::verify(&ext, key).expect("extension").size,
        TreeSize(5)
    );
}

#[test]
fn checkpoint_now_writes_the_note_by_size_and_as_the_latest() {
    let dir = tempfile::tempdir().expect("tempdir");
    let signer = signer();
    let (log, _) = open(dir.path(), &signer);
    assert_eq!(log.checkpoint_now().expect("nothing to sign"), None);
    for i in 0..10 {
        log.append_wait(bytes(i)).expect("appends");
    }
    let cp = log.checkpoint_now().expect("signs").expect("a checkpoint");
    assert_eq!(cp.size, TreeSize(10));
    assert_eq!(cp.root, log.root());
    let latest = std::fs::read_to_string(dir.path().join("checkpoint")).expect("checkpoint");
    let by_size = std::fs::read_to_string(dir.path().join("checkpoints/00000000000000000010"))
        .expect("by size");
    assert_eq!(latest, cp.note);
    assert_eq!(by_size, cp.note);
    assert_eq!(
        std::fs::read_to_string(dir.path().join("log.pub")).expect("log.pub"),
        format!("{}\n", signer.verifier_key())
    );
    // No growth, no new checkpoint.
    assert_eq!(
        log.checkpoint_now().expect("same").expect("same").size,
        TreeSize(10)
    );
    for i in 10..15 {
        log.append_wait(bytes(i)).expect("appends");
    }
    log.checkpoint_now().expect("signs");
    assert_eq!(log.latest_checkpoint().expect("latest").size, TreeSize(15));
    let files = std::fs::read_dir(dir.path().join("checkpoints"))
        .expect("dir")
        .count();
    assert_eq!(files, 2, "all checkpoints are kept");
}

#[test]
fn the_checkpointer_signs_while_the_tree_grows() {
    let dir = tempfile::tempdir().expect("tempdir");
    let signer = signer();
    let (log, _) = AuditLog::open(
        dir.path(),
        Options {
            signer: Some(signer.clone()),
            checkpoint_interval: Duration::from_millis(20),
            ..Options::default()
        },
    )
    .expect("opens");
    for i in 0..3 {
        log.append_wait(bytes(i)).expect("appends");
    }
    let deadline = Instant::now() + Duration::from_secs(10);
    while log
        .latest_checkpoint()
        .is_none_or(|c| c.size != TreeSize(3))
    {
        assert!(Instant::now() < deadline, "no checkpoint within 10 s");
        std::thread::sleep(Duration::from_millis(10));
    }
    let note = std::fs::read_to_string(dir.path().join("checkpoint")).expect("written");
    let cp = Checkpoint::verify(&note, signer.verifier_key()).expect("verifies");
    assert_eq!(cp.root, log.root_at(TreeSize(3)).expect("root"));
}

#[test]
fn a_log_pub_of_another_key_refuses_to_open() {
    let dir = tempfile::tempdir().expect("tempdir");
    drop(open(dir.path(), &signer()));
    let err = AuditLog::open(dir.path(), options(&signer())).expect_err("other key");
    assert_eq!(err.code(), "key_mismatch");
}
