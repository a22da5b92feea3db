//! The `isnad` command as a user runs it. (These tests also make `cargo test --workspace` build
//! the binary that the end-to-end tests in `tests/` start.)

use std::path::Path;
use std::process::Command;

fn isnad() -> Command {
    Command::new(env!("CARGO_BIN_EXE_isnad"))
}

fn sample() -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/local")
}

#[test]
fn policy_check_accepts_the_sample_federation() {
    let output = isnad()
        .args(["policy", "check"])
        .arg(sample())
        .output()
        .expect("runs");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(
        stdout.starts_with("ok: 5 agencies, 3 datasets, 2 purposes"),
        "{stdout}"
    );
}

#[test]
fn policy_check_reports_errors_with_their_place_and_fails() {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::create_dir(dir.path().join("rules")).expect("rules");
    std::fs::copy(
        sample().join("catalogue.yaml"),
        dir.path().join("catalogue.yaml"),
    )
    .expect("copy");
    std::fs::write(
        dir.path().join("rules/bad.yaml"),
        "rules:\n  - id: r\n    consumer: housing-programme\n    dataset: identity.person\n    purpose: housing-grant\n    fields:\n      mobile: alow\n",
    )
    .expect("write");
    let output = isnad()
        .args(["policy", "check"])
        .arg(dir.path())
        .output()
        .expect("runs");
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("rules/bad.yaml:7:15: unknown treatment \"alow\""),
        "{stderr}"
    );
}

#[test]
fn the_demo_runs_a_housing_grant_application_and_exits_zero() {
    let output = isnad()
        .arg("demo")
        .arg("--federation")
        .arg(sample())
        .output()
        .expect("runs");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(
        stdout.contains("mobile               denied_by_rule"),
        "{stdout}"
    );
    assert!(
        stdout.contains("refused: PermissionDenied no_rule"),
        "{stdout}"
    );
    assert!(
        stdout.contains("Every requested field was accounted for."),
        "{stdout}"
    );
}
