//! Hostile or broken policy files: each must be refused with an error that names the file (and,
//! where there is one, the place), never a panic, a hang or a stack overflow.

use std::path::Path;

use isnad_policy::{Date, LoadErrors, PolicySet, Sources};

const CATALOGUE: &str = include_str!("../../deploy/local/catalogue.yaml");

fn day() -> Date {
    Date::from_calendar_date(2026, time::Month::June, 1).expect("a valid date")
}

/// The errors of the sample catalogue with `rules/x.yaml` holding `bytes`, as displayed.
fn errors_of_rules(bytes: impl Into<Vec<u8>>) -> Vec<String> {
    errors_of(vec![
        ("catalogue.yaml", CATALOGUE.as_bytes().to_vec()),
        ("rules/x.yaml", bytes.into()),
    ])
}

fn errors_of(files: Vec<(&str, Vec<u8>)>) -> Vec<String> {
    match PolicySet::compile(&Sources::from_files(files), day()) {
        Ok(_) => panic!("the store should be rejected"),
        Err(errors) => errors.0.iter().map(ToString::to_string).collect(),
    }
}

/// Exactly one error, starting with `prefix` (`file:line:column: message...`).
fn assert_single(errors: &[String], prefix: &str) {
    assert_eq!(errors.len(), 1, "expected one error, got {errors:#?}");
    assert!(
        errors[0].starts_with(prefix),
        "{:?} should start with {prefix:?}",
        errors[0]
    );
}

/// A valid statute rule whose fields are `fields` (lines from 9 on, indented by 6).
fn rule_with_fields(fields: &str) -> String {
    format!(
        "rules:
  - id: r1
    consumer: housing-programme
    dataset: identity.person
    purpose: housing-grant
    legal_basis: statute
    reference: Federal Housing Law No. 7 of 2025 (sample), art. 12
    fields:
{fields}"
    )
}

#[test]
fn malformed_yaml_is_an_error_at_its_place() {
    assert_single(
        &errors_of_rules("rules: [ { id: x,\n"),
        "rules/x.yaml:1:10: unclosed bracket '{'",
    );
    // A broken catalogue: the rule files are still parsed and their errors reported.
    let errors = errors_of(vec![
        ("catalogue.yaml", b"federation: [isnad.example\n".to_vec()),
        ("rules/x.yaml", b"rules: [\n".to_vec()),
    ]);
    assert_eq!(errors.len(), 2, "{errors:#?}");
    assert!(
        errors[0].starts_with("catalogue.yaml:1:13: "),
        "{errors:#?}"
    );
    assert!(errors[1].starts_with("rules/x.yaml:"), "{errors:#?}");
}

#[test]
fn wrong_types_are_errors_at_their_place() {
    // A list where a map is expected.
    assert_single(
        &errors_of_rules(rule_with_fields("").replace("fields:\n", "fields: [sex, allow]\n")),
        "rules/x.yaml:8:13: expected mapping start",
    );
    assert_single(
        &errors_of(vec![(
            "catalogue.yaml",
            b"federation: isnad.example\nagencies: [a, b]\ndatasets: {}\npurposes: {}\n".to_vec(),
        )]),
        "catalogue.yaml:2:11: expected mapping start",
    );
    // A map where a list is expected.
    assert_single(
        &errors_of_rules("rules: { id: x }\n"),
        "rules/x.yaml:1:8: expected sequence start",
    );
    // A number where a treatment is expected.
    let errors = errors_of_rules(rule_with_fields("      sex: 42\n"));
    assert_single(
        &errors,
        "rules/x.yaml:9:7: invalid type: integer `42`, expected a treatment: allow, deny, hash,",
    );
    // A word where a boolean is expected.
    assert_single(
        &errors_of_rules(rule_with_fields("      sex: allow\n").replace(
            "    fields:",
            "    consent_required: sometimes\n    fields:",
        )),
        "rules/x.yaml:8:23: invalid boolean",
    );
}

#[test]
fn deeply_nested_yaml_is_refused_without_overflowing_the_stack() {
    let nested = "[".repeat(10_000);
    assert_single(
        &errors_of_rules(format!("rules: {nested}")),
        "rules/x.yaml:1:263: recursion limit exceeded",
    );
    // Closed, too.
    let closed = format!("rules: {nested}{}\n", "]".repeat(10_000));
    assert_single(
        &errors_of_rules(closed),
        "rules/x.yaml:1:263: recursion limit exceeded",
    );
    // Where the loader accepts any shape (a transform's argument), so nothing refuses it early.
    assert_single(
        &errors_of_rules(rule_with_fields(&format!(
            "      sex: {{ mask: {}",
            "{a: ".repeat(10_000)
        ))),
        "rules/x.yaml:9:128: the file exceeds a parser limit: nesting deeper than 32 levels",
    );
    assert_single(
        &errors_of_rules(rule_with_fields(&format!(
            "      sex: {{ mask: {{ keep_last: {}",
            "[".repeat(10_000)
        ))),
        "rules/x.yaml:9:286: recursion limit exceeded",
    );
    // Block sequences, which have no bracket to count.
    assert_single(
        &errors_of_rules(rule_with_fields(&format!(
            "      sex:\n        mask:\n          {}x\n",
            "- ".repeat(10_000)
        ))),
        "rules/x.yaml:11:65: the file exceeds a parser limit: nesting deeper than 32 levels",
    );
    // In the catalogue.
    let errors = errors_of(vec![(
        "catalogue.yaml",
        format!("federation: {nested}").into_bytes(),
    )]);
    assert_single(&errors, "catalogue.yaml:1:");
}

/// A copy of the sample catalogue in a temporary directory, with `rules/` holding `rules`.
fn store_dir(rules: &[(&str, &[u8])]) -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("a temporary directory");
    std::fs::create_dir(dir.path().join("rules")).expect("create rules/");
    std::fs::write(dir.path().join("catalogue.yaml"), CATALOGUE).expect("write the catalogue");
    for (name, bytes) in rules {
        std::fs::write(dir.path().join("rules").join(name), bytes).expect("write a rule file");
    }
    dir
}

const LIMIT: usize = 4 << 20;

/// `rules: []` padded with comment lines to exactly `size` bytes.
fn padded(size: usize) -> Vec<u8> {
    let mut bytes = b"rules: []\n".to_vec();
    let line = format!("# {}\n", "x".repeat(77));
    while bytes.len() + line.len() <= size {
        bytes.extend_from_slice(line.as_bytes());
    }
    while bytes.len() < size {
        bytes.push(b'\n');
    }
    assert_eq!(bytes.len(), size);
    bytes
}

#[test]
fn a_file_over_4_mib_is_refused_before_it_is_parsed() {
    let huge = padded(LIMIT + 1);
    let dir = store_dir(&[("huge.yaml", &huge), ("ok.yaml", b"rules: []\n")]);
    let errors: LoadErrors =
        Sources::read_dir(dir.path()).expect_err("a file over the limit is refused");
    let shown: Vec<String> = errors.0.iter().map(ToString::to_string).collect();
    assert_eq!(
        shown,
        ["rules/huge.yaml: larger than 4194304 bytes, the limit for a policy file"]
    );
    assert_eq!((errors.0[0].line, errors.0[0].column), (0, 0));
    // A huge catalogue, too.
    std::fs::write(dir.path().join("catalogue.yaml"), &huge).expect("write");
    std::fs::remove_file(dir.path().join("rules/huge.yaml")).expect("remove");
    let errors = Sources::read_dir(dir.path()).expect_err("refused");
    assert_eq!(errors.0.len(), 1, "{errors}");
    assert!(
        errors.0[0]
            .to_string()
            .starts_with("catalogue.yaml: larger than"),
        "{errors}"
    );
}

#[test]
fn a_file_of_exactly_4_mib_is_read() {
    let dir = store_dir(&[("big.yaml", &padded(LIMIT))]);
    let sources = Sources::read_dir(dir.path()).unwrap_or_else(|errors| panic!("{errors}"));
    let big = sources
        .files()
        .find(|(name, _)| *name == "rules/big.yaml")
        .expect("the file is read");
    assert_eq!(big.1.len(), LIMIT);
    let set = PolicySet::compile(&sources, day()).unwrap_or_else(|errors| panic!("{errors}"));
    assert_eq!(set.rule_count(), 0);
}

#[test]
fn duplicate_keys_are_refused_everywhere() {
    // Two `rules:` lists in one file.
    assert_single(
        &errors_of_rules("rules: []\nrules: []\n"),
        "rules/x.yaml:2:1: duplicate mapping key: rules",
    );
    // The same field twice: neither treatment may silently win.
    assert_single(
        &errors_of_rules(rule_with_fields("      sex: deny\n      sex: allow\n")),
        "rules/x.yaml:10:7: duplicate mapping key: sex (a key is written once)",
    );
    // An agency named twice in the catalogue.
    let catalogue = CATALOGUE.replace(
        "agencies:\n",
        "agencies:\n  housing-programme:\n    name: An impostor\n    level: federal\n",
    );
    let errors = errors_of(vec![("catalogue.yaml", catalogue.into_bytes())]);
    assert_eq!(errors.len(), 1, "{errors:#?}");
    assert!(
        errors[0].starts_with("catalogue.yaml:")
            && errors[0].contains("duplicate mapping key: housing-programme"),
        "{errors:#?}"
    );
}

#[test]
fn bytes_that_are_not_utf8_are_refused() {
    assert_eq!(
        errors_of_rules(b"rules: []\n\xff\xfe".to_vec()),
        [
            "rules/x.yaml: not valid UTF-8 (first bad byte at offset 10); policy files are UTF-8 text"
        ]
    );
    // Latin-1 in a description.
    let latin1 = rule_with_fields("      sex: allow\n")
        .replace("    fields:", "    description: caf\u{e9}\n    fields:")
        .into_bytes();
    let latin1: Vec<u8> = {
        let at = latin1
            .windows(2)
            .position(|w| w == "\u{e9}".as_bytes())
            .expect("the é");
        let mut bytes = latin1[..at].to_vec();
        bytes.push(0xe9);
        bytes.extend_from_slice(&latin1[at + 2..]);
        bytes
    };
    let errors = errors_of_rules(latin1);
    assert_single(
        &errors,
        "rules/x.yaml: not valid UTF-8 (first bad byte at offset",
    );
    // UTF-16, with its byte order mark, in the catalogue.
    let utf16: Vec<u8> = [0xff, 0xfe]
        .into_iter()
        .chain("federation: x\n".encode_utf16().flat_map(u16::to_le_bytes))
        .collect();
    assert_eq!(
        errors_of(vec![("catalogue.yaml", utf16)]),
        [
            "catalogue.yaml: not valid UTF-8 (first bad byte at offset 0); policy files are UTF-8 text"
        ]
    );
}

#[test]
fn an_empty_file_is_refused() {
    assert_single(&errors_of_rules(""), "rules/x.yaml: the file is empty");
    assert_single(
        &errors_of_rules("# only a comment\n"),
        "rules/x.yaml:2:1: unexpected end of input",
    );
    assert_single(
        &errors_of(vec![("catalogue.yaml", Vec::new())]),
        "catalogue.yaml: the file is empty",
    );
    // `rules:` with nothing after it is null, not an empty list.
    assert_single(
        &errors_of_rules("rules:\n"),
        "rules/x.yaml:1:6: expected sequence start",
    );
}

#[test]
fn a_missing_catalogue_is_refused() {
    assert_eq!(
        errors_of(vec![("rules/x.yaml", b"rules: []\n".to_vec())]),
        ["catalogue.yaml: missing: a store needs a catalogue"]
    );
}

/// Ten levels of nine-fold aliases, each level anchored in the argument of a transform (which
/// the loader reads leniently, so the expansion is really consumed): 9^10 nodes if expanded.
fn alias_bomb() -> String {
    let mut fields =
        String::from("      f0: { mask: &a0 [lol, lol, lol, lol, lol, lol, lol, lol, lol] }\n");
    for level in 1..10 {
        let aliases = vec![format!("*a{}", level - 1); 9].join(", ");
        fields.push_str(&format!(
            "      f{level}: {{ mask: &a{level} [{aliases}] }}\n"
        ));
    }
    rule_with_fields(&fields)
}

#[test]
fn a_billion_laughs_is_refused_by_the_budget() {
    let errors = errors_of_rules(alias_bomb());
    assert_single(&errors, "rules/x.yaml:");
    assert!(errors[0].contains("budget breached"), "{errors:#?}");
    // The classic form, at the top level: refused at its first key, before any expansion.
    let classic = "a: &a [lol, lol, lol, lol, lol, lol, lol, lol, lol]\n\
                   b: &b [*a, *a, *a, *a, *a, *a, *a, *a, *a]\n\
                   c: &c [*b, *b, *b, *b, *b, *b, *b, *b, *b]\n\
                   rules: *c\n";
    assert_single(
        &errors_of_rules(classic),
        "rules/x.yaml:1:1: unknown field `a`, expected one of rules",
    );
}

#[test]
fn more_than_one_yaml_document_is_refused() {
    assert_single(
        &errors_of_rules("rules: []\n---\nrules: []\n"),
        "rules/x.yaml:2:1: the file exceeds a parser limit: more than one YAML document",
    );
    // One document with explicit markers is fine.
    let files = [
        ("catalogue.yaml", CATALOGUE),
        ("rules/x.yaml", "---\nrules: []\n...\n"),
    ];
    PolicySet::compile(&Sources::from_files(files), day())
        .unwrap_or_else(|errors| panic!("{errors}"));
}

#[test]
fn a_nul_byte_is_refused() {
    assert_single(
        &errors_of_rules("rules: []\n\0"),
        "rules/x.yaml:2:1: unexpected character",
    );
    // Inside a scalar, where it could otherwise hide in a description or a name.
    assert_single(
        &errors_of_rules(
            rule_with_fields("      sex: allow\n")
                .replace("    fields:", "    description: a\0b\n    fields:"),
        ),
        "rules/x.yaml:8:19: unexpected character",
    );
    assert_single(
        &errors_of_rules(rule_with_fields("      sex\0: allow\n")),
        "rules/x.yaml:9:10: unexpected character",
    );
}

#[test]
fn a_store_directory_without_rules_or_catalogue_is_refused() {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let errors = Sources::read_dir(dir.path()).expect_err("nothing to read");
    let files: Vec<&Path> = errors.0.iter().map(|e| e.file.as_path()).collect();
    assert_eq!(
        files,
        [Path::new("rules"), Path::new("catalogue.yaml")],
        "{errors}"
    );
}

/// YAML merge keys (`<<`) would expand before duplicate keys are checked, and an explicit key
/// overrides a merged one: the merged `deny` would be silently dropped and `sex` released.
/// Merge keys are refused.
#[test]
fn a_merge_key_cannot_hide_a_deny() {
    for fields in [
        "      sex: allow\n      <<: { sex: deny }\n",
        "      <<: { sex: deny }\n      sex: allow\n",
    ] {
        let errors = errors_of_rules(rule_with_fields(fields));
        assert_eq!(errors.len(), 1, "{errors:#?}");
        assert!(errors[0].starts_with("rules/x.yaml:"), "{errors:#?}");
    }
}

/// A tag could make a reviewer read `deny` where the parser reads `allow`; tags are refused,
/// and `!!binary` is not decoded into a treatment.
#[test]
fn a_tag_cannot_change_a_treatment() {
    let errors = errors_of_rules(rule_with_fields("      sex: !deny allow\n"));
    assert_eq!(errors.len(), 1, "{errors:#?}");
    let errors = errors_of_rules(rule_with_fields("      sex: !!binary YWxsb3c=\n"));
    assert_eq!(errors.len(), 1, "{errors:#?}");
    assert!(!errors[0].contains("allow\""), "{errors:#?}");
}

#[test]
fn windows_and_old_mac_line_endings_keep_error_lines_right() {
    // CR LF (Windows): loads, and errors are on the lines an editor shows.
    let unknown = rule_with_fields("      shoe_size: allow\n");
    assert_single(
        &errors_of_rules(unknown.replace('\n', "\r\n")),
        "rules/x.yaml:9:18: dataset \"identity.person\" has no field \"shoe_size\"",
    );
    let files = [
        ("catalogue.yaml", CATALOGUE.replace('\n', "\r\n")),
        (
            "rules/x.yaml",
            rule_with_fields("      sex: allow\n").replace('\n', "\r\n"),
        ),
    ];
    let set = PolicySet::compile(&Sources::from_files(files), day())
        .unwrap_or_else(|errors| panic!("{errors}"));
    assert_eq!(set.rule_count(), 1);
    // A lone CR is a line break too, as YAML defines it.
    assert_single(
        &errors_of_rules(unknown.replace('\n', "\r")),
        "rules/x.yaml:9:18: dataset \"identity.person\" has no field \"shoe_size\"",
    );
}
