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
        "rules:\n  - id: r\n    consumer: housing-programme\n    dataset: identity.person\n    purpose: housing-grant\n    legal_basis: consent\n    fields:\n      mobile: alow\n",
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
        stderr.contains("rules/bad.yaml:8:15: field \"mobile\": unknown treatment \"alow\""),
        "{stderr}"
    );
}

/// A copy of the sample store (catalogue, rules, tests) in a temporary directory.
fn copy_of_sample() -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("tempdir");
    for sub in ["rules", "tests"] {
        std::fs::create_dir(dir.path().join(sub)).expect("mkdir");
        for entry in std::fs::read_dir(sample().join(sub)).expect("read sample") {
            let entry = entry.expect("entry");
            std::fs::copy(entry.path(), dir.path().join(sub).join(entry.file_name()))
                .expect("copy");
        }
    }
    std::fs::copy(
        sample().join("catalogue.yaml"),
        dir.path().join("catalogue.yaml"),
    )
    .expect("copy");
    dir
}

fn run(args: &[&str], dir: &Path) -> (bool, String, String) {
    let output = isnad().args(args).arg(dir).output().expect("runs");
    (
        output.status.success(),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

#[test]
fn policy_test_passes_the_sample_cases_and_fails_a_broken_expectation() {
    let (ok, stdout, stderr) = run(&["policy", "test"], &sample());
    assert!(ok, "{stdout}{stderr}");
    assert!(stdout.contains("11 cases: 11 passed, 0 failed"), "{stdout}");

    // Loosen a rule: the case that pins it fails, and says how.
    let dir = copy_of_sample();
    let housing = dir.path().join("rules/housing.yaml");
    let text = std::fs::read_to_string(&housing).expect("read");
    std::fs::write(
        &housing,
        text.replace(
            "date_of_birth: { derive: age_over(21) }",
            "date_of_birth: allow",
        ),
    )
    .expect("write");
    let (ok, stdout, _) = run(&["policy", "test"], dir.path());
    assert!(!ok, "a failing case must fail the command: {stdout}");
    assert!(
        stdout.contains("date_of_birth: expected age_over(21), got allow by housing-identity"),
        "{stdout}"
    );
    assert!(stdout.contains("10 passed, 1 failed"), "{stdout}");
}

#[test]
fn policy_explain_names_the_deciding_rule_and_the_shadow_outcome() {
    let output = isnad()
        .args(["policy", "explain"])
        .arg(sample())
        .args([
            "--consumer",
            "housing-programme",
            "--dataset",
            "labour.employment",
            "--purpose",
            "housing-grant",
            "--fields",
            "monthly_salary_aed,occupation",
            "--date",
            "2026-06-01",
        ])
        .output()
        .expect("runs");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "{stdout}");
    assert!(
        stdout.contains(
            "monthly_salary_aed: generalize(bands=[0,5000,10000,15000,20000,30000]) by housing-employment"
        ),
        "{stdout}"
    );
    assert!(
        stdout.contains(
            "with the shadow rules: generalize(step=10000) by housing-employment-coarser-bands"
        ),
        "{stdout}"
    );
    assert!(
        stdout.contains("occupation: allow by housing-key-worker-by-consent"),
        "{stdout}"
    );
    assert!(
        stdout.contains(
            "legal basis consent; needs the citizen's consent; at most 10 per day per consumer \
             and subject"
        ),
        "{stdout}"
    );
}

#[test]
fn policy_diff_lists_added_removed_and_changed_grants() {
    let dir = copy_of_sample();
    let housing = dir.path().join("rules/housing.yaml");
    let text = std::fs::read_to_string(&housing).expect("read");
    let text = text
        .replace("      emirate: allow\n", "      sex: allow\n")
        .replace(
            "family_book_number: { mask: { keep_last: 4 } }",
            "family_book_number: allow",
        );
    std::fs::write(&housing, text).expect("write");
    let output = isnad()
        .args(["policy", "diff"])
        .arg(sample())
        .arg(dir.path())
        .output()
        .expect("runs");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "{stdout}");
    assert!(
        stdout.contains(
            "+ housing-programme identity.person housing-grant sex: allow by housing-identity"
        ),
        "{stdout}"
    );
    assert!(
        stdout.contains(
            "- housing-programme identity.person housing-grant emirate: allow by housing-identity"
        ),
        "{stdout}"
    );
    assert!(
        stdout.contains("~ housing-programme civil.family housing-grant family_book_number: mask(keep_last=4) by housing-family"),
        "{stdout}"
    );
    assert!(stdout.contains("1 added, 1 removed, 1 changed"), "{stdout}");

    let output = isnad()
        .args(["policy", "diff", "--json"])
        .arg(sample())
        .arg(dir.path())
        .output()
        .expect("runs");
    let changes: serde_json::Value = serde_json::from_slice(&output.stdout).expect("JSON");
    let changes = changes.as_array().expect("an array");
    assert_eq!(changes.len(), 3, "{changes:?}");
    let changed = changes
        .iter()
        .find(|c| c["change"] == "changed")
        .expect("a changed grant");
    assert_eq!(changed["field"], "family_book_number");
    assert_eq!(changed["consumer"], "housing-programme");
}

#[test]
fn policy_sign_writes_a_signature_over_the_content() {
    let keys = tempfile::tempdir().expect("tempdir");
    let prefix = keys.path().join("security-team");
    let output = isnad()
        .args(["policy", "keygen", "--out"])
        .arg(&prefix)
        .output()
        .expect("runs");
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let dir = copy_of_sample();
    let output = isnad()
        .args(["policy", "sign"])
        .arg(dir.path())
        .arg("--key")
        .arg(prefix.with_extension("key"))
        .output()
        .expect("runs");
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let signature = std::fs::read(dir.path().join("policy.sig")).expect("policy.sig");
    let key = isnad_policy::VerifyingKey::parse(
        &std::fs::read_to_string(prefix.with_extension("pub")).expect("public key"),
    )
    .expect("parses");
    let sources = isnad_policy::Sources::read_dir(dir.path()).expect("reads");
    key.verify(Some(&signature), &sources.revision())
        .expect("the signature verifies");
    // A changed comment is a changed store: the signature no longer matches.
    let housing = dir.path().join("rules/housing.yaml");
    let text = std::fs::read_to_string(&housing).expect("read");
    std::fs::write(&housing, format!("# edited\n{text}")).expect("write");
    let changed = isnad_policy::Sources::read_dir(dir.path()).expect("reads");
    assert!(matches!(
        key.verify(Some(&signature), &changed.revision()),
        Err(isnad_policy::SignatureError::WrongRevision { .. })
    ));
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
