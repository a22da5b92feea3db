//! The sample federation's records are exactly what the generator makes, and they hang together.

use std::collections::HashMap;
use std::path::PathBuf;

use isnad_provider::synth::{self, CIVIL_FILE, IDENTITY_FILE, LABOUR_FILE, SAMPLE_PEOPLE};
use serde_json::Value;

fn records_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../deploy/local/records")
}

fn lines(text: &str) -> Vec<serde_json::Map<String, Value>> {
    text.lines()
        .map(
            |line| match serde_json::from_str(line).expect("a JSON line") {
                Value::Object(object) => object,
                other => panic!("not an object: {other}"),
            },
        )
        .collect()
}

#[test]
fn committed_records_match_the_generator() {
    let population = synth::generate(SAMPLE_PEOPLE);
    let bless = std::env::var_os("ISNAD_BLESS").is_some();
    for (name, fresh) in [
        (IDENTITY_FILE, &population.identity),
        (CIVIL_FILE, &population.civil),
        (LABOUR_FILE, &population.labour),
    ] {
        let path = records_dir().join(name);
        if bless {
            std::fs::write(&path, fresh).expect("write records");
        }
        let committed = std::fs::read_to_string(&path).unwrap_or_default();
        assert!(
            committed == *fresh,
            "{} differs from the generator; run \
             `ISNAD_BLESS=1 cargo test -p isnad-provider --test synthetic_records`",
            path.display()
        );
    }
}

#[test]
fn generation_is_deterministic() {
    let (a, b) = (synth::generate(300), synth::generate(300));
    assert_eq!(a.identity, b.identity);
    assert_eq!(a.civil, b.civil);
    assert_eq!(a.labour, b.labour);
}

#[test]
fn every_file_has_the_documented_keys_in_order() {
    let population = synth::generate(SAMPLE_PEOPLE);
    let expect: [(&str, &[&str]); 3] = [
        (
            &population.identity,
            &[
                "subject",
                "full_name_en",
                "full_name_ar",
                "date_of_birth",
                "sex",
                "nationality",
                "emirate",
                "id_card_expiry",
                "mobile",
                "email",
            ],
        ),
        (
            &population.civil,
            &[
                "subject",
                "marital_status",
                "spouse_subject",
                "family_book_number",
                "children",
                "children_count",
                "mother_subject",
                "father_subject",
            ],
        ),
        (
            &population.labour,
            &[
                "subject",
                "employed",
                "employer_name",
                "occupation",
                "monthly_salary_aed",
                "employment_start",
                "contract_type",
            ],
        ),
    ];
    for (text, keys) in expect {
        assert!(text.ends_with('\n'));
        for line in text.lines() {
            let order: Vec<&str> = line
                .trim_matches(|c| c == '{' || c == '}')
                .split(",\"")
                .filter_map(|part| part.trim_start_matches('"').split("\":").next())
                .filter(|key| keys.contains(key))
                .collect();
            assert_eq!(order, keys, "{line}");
        }
        assert_eq!(text.lines().count(), SAMPLE_PEOPLE);
    }
}

#[test]
fn subjects_are_unique_uae_id_numbers() {
    let population = synth::generate(SAMPLE_PEOPLE);
    let people = lines(&population.identity);
    assert!(people.len() >= 1000);
    let mut seen = std::collections::HashSet::new();
    for person in &people {
        let subject = person["subject"].as_str().expect("subject");
        assert!(subject.starts_with("784"), "{subject}");
        assert!(synth::luhn_valid(subject), "{subject}");
        let born = person["date_of_birth"].as_str().expect("date");
        assert_eq!(&subject[3..7], &born[0..4], "birth year in {subject}");
        assert!(seen.insert(subject.to_owned()), "duplicate {subject}");
    }
}

fn age(born: &str) -> i64 {
    let year: i64 = born[0..4].parse().expect("year");
    let later_in_year = &born[5..] > "01-01";
    2026 - year - i64::from(later_in_year)
}

#[test]
fn families_are_consistent() {
    let population = synth::generate(SAMPLE_PEOPLE);
    let identity = lines(&population.identity);
    let civil = lines(&population.civil);
    let labour = lines(&population.labour);
    let by_subject: HashMap<&str, usize> = identity
        .iter()
        .enumerate()
        .map(|(i, p)| (p["subject"].as_str().expect("subject"), i))
        .collect();
    let born = |i: usize| {
        identity[i]["date_of_birth"]
            .as_str()
            .expect("dob")
            .to_owned()
    };
    let mut newborns = 0;
    for (i, record) in civil.iter().enumerate() {
        assert_eq!(record["subject"], identity[i]["subject"]);
        assert_eq!(labour[i]["subject"], identity[i]["subject"]);
        let person_age = age(&born(i));
        if let Some(spouse) = record["spouse_subject"].as_str() {
            let j = by_subject[spouse];
            assert_eq!(civil[j]["spouse_subject"], identity[i]["subject"]);
            assert_eq!(record["marital_status"], "married");
            assert_ne!(identity[i]["sex"], identity[j]["sex"]);
            assert!(person_age >= 18);
        } else {
            assert_ne!(record["marital_status"], "married");
        }
        let children = record["children"].as_array().expect("children");
        assert_eq!(
            record["children_count"].as_u64(),
            Some(children.len() as u64)
        );
        for child in children {
            let c = by_subject[child.as_str().expect("subject")];
            let parent_year: i64 = born(i)[0..4].parse().expect("year");
            let child_year: i64 = born(c)[0..4].parse().expect("year");
            assert!(child_year - parent_year >= 16);
            assert_eq!(civil[c]["family_book_number"], record["family_book_number"]);
            let parent_key = if identity[i]["sex"] == "F" {
                "mother_subject"
            } else {
                "father_subject"
            };
            assert_eq!(civil[c][parent_key], identity[i]["subject"]);
        }
        if let Some(mother) = record["mother_subject"].as_str() {
            let m = by_subject[mother];
            assert!(
                civil[m]["children"]
                    .as_array()
                    .expect("list")
                    .contains(&identity[i]["subject"])
            );
        }
        if born(i).as_str() >= "2025-07-01" && record["mother_subject"].is_string() {
            newborns += 1;
        }
        if identity[i]["nationality"] == "ARE" {
            assert!(record["family_book_number"].is_string());
        }
        if person_age < 18 {
            assert_eq!(labour[i]["employed"], false);
        }
    }
    assert!(newborns >= 20, "{newborns} newborns");
}

#[test]
fn the_first_person_is_the_demo_applicant() {
    let population = synth::generate(SAMPLE_PEOPLE);
    let identity = &lines(&population.identity)[0];
    let civil = &lines(&population.civil)[0];
    let labour = &lines(&population.labour)[0];
    assert_eq!(identity["nationality"], "ARE");
    assert_eq!(identity["emirate"], "dubai");
    assert!(age(identity["date_of_birth"].as_str().expect("dob")) >= 18);
    assert_eq!(civil["marital_status"], "married");
    assert!(civil["children_count"].as_u64().expect("count") >= 1);
    assert_eq!(labour["employed"], true);
}
