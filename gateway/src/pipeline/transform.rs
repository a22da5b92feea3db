//! The policy's transforms, applied to provider values in step 7. Deterministic: the same value,
//! transform, consumer key and day always give the same result.
//!
//! | transform | applies to | result |
//! |---|---|---|
//! | `mask(keep_last=N)`, `mask(keep_first=N)` | string | string, other characters as `*` |
//! | `hash` | string, int, date, bytes | string, lowercase hex HMAC-SHA-256 |
//! | `age_over(N)` | date | bool: at least N full years old on the day |
//! | `year_of` | date | int |
//! | `generalize(year)`, `generalize(month)` | date | string `YYYY`, `YYYY-MM` |
//! | `generalize(step=S)` | int, double | string `lo-hi`, the band of width S |
//! | `generalize(bands=[b1,...])` | int, double | string `lo-hi`, `<b1` or `>=bn` |
//!
//! `hash` is keyed per consumer: the key is HMAC-SHA-256(gateway hash key, "isnad-hash-v1:" +
//! consumer agency id), so a consumer can match values it receives again (the same spouse in
//! two applications) without learning them, and two consumers cannot join their results. The
//! value hashed is its text: a string's UTF-8, an int's decimal digits, a date's `YYYY-MM-DD`,
//! bytes as they are.

use isnad_policy::{Generalization, Mask, Transform};
use isnad_proto::v1::{Date, Value, value::Kind};
use ring::hmac;

/// Why a value could not be transformed: the value does not fit (the catalogue and validation
/// make that rare; a provider can still send an impossible date).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct NotApplicable;

/// The gateway's secret for `hash`, from which each consumer's key is derived.
#[derive(Clone)]
pub struct HashKey(hmac::Key);

impl std::fmt::Debug for HashKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("HashKey(..)")
    }
}

impl HashKey {
    /// A key from secret bytes (at least 32).
    pub fn new(secret: &[u8]) -> anyhow::Result<HashKey> {
        anyhow::ensure!(
            secret.len() >= 32,
            "the hash key must be at least 32 bytes, got {}",
            secret.len()
        );
        Ok(HashKey(hmac::Key::new(hmac::HMAC_SHA256, secret)))
    }

    /// The key of one consumer.
    pub(crate) fn for_consumer(&self, consumer: &str) -> hmac::Key {
        let tag = hmac::sign(&self.0, format!("isnad-hash-v1:{consumer}").as_bytes());
        hmac::Key::new(hmac::HMAC_SHA256, tag.as_ref())
    }
}

/// `transform` applied to `value`. `consumer_key` is needed for `hash` only; `today` for
/// `age_over` only.
pub(crate) fn apply(
    transform: &Transform,
    value: &Value,
    consumer_key: Option<&hmac::Key>,
    today: time::Date,
) -> Result<Value, NotApplicable> {
    let kind = value.kind.as_ref().ok_or(NotApplicable)?;
    let result = match (transform, kind) {
        (Transform::Mask(mask), Kind::StringValue(text)) => Kind::StringValue(masked(text, *mask)),
        (Transform::Hash, kind) => {
            let key = consumer_key.ok_or(NotApplicable)?;
            let text = match kind {
                Kind::StringValue(text) => text.as_bytes().to_vec(),
                Kind::IntValue(n) => n.to_string().into_bytes(),
                Kind::DateValue(date) => iso_date(date)?.to_string().into_bytes(),
                Kind::BytesValue(bytes) => bytes.clone(),
                _ => return Err(NotApplicable),
            };
            let tag = hmac::sign(key, &text);
            Kind::StringValue(tag.as_ref().iter().map(|b| format!("{b:02x}")).collect())
        }
        (Transform::AgeOver(years), Kind::DateValue(date)) => {
            Kind::BoolValue(age_at(iso_date(date)?, today) >= i64::from(*years))
        }
        (Transform::YearOf, Kind::DateValue(date)) => {
            Kind::IntValue(i64::from(iso_date(date)?.year()))
        }
        (Transform::Generalize(Generalization::Year), Kind::DateValue(date)) => {
            Kind::StringValue(format!("{:04}", iso_date(date)?.year()))
        }
        (Transform::Generalize(Generalization::Month), Kind::DateValue(date)) => {
            let date = iso_date(date)?;
            Kind::StringValue(format!("{:04}-{:02}", date.year(), u8::from(date.month())))
        }
        (Transform::Generalize(generalization), Kind::IntValue(n)) => {
            Kind::StringValue(band(generalization, *n as f64)?)
        }
        (Transform::Generalize(generalization), Kind::DoubleValue(x)) if x.is_finite() => {
            Kind::StringValue(band(generalization, *x)?)
        }
        _ => return Err(NotApplicable),
    };
    Ok(Value { kind: Some(result) })
}

fn iso_date(date: &Date) -> Result<time::Date, NotApplicable> {
    let month = u8::try_from(date.month)
        .ok()
        .and_then(|m| time::Month::try_from(m).ok())
        .ok_or(NotApplicable)?;
    let day = u8::try_from(date.day).map_err(|_| NotApplicable)?;
    time::Date::from_calendar_date(date.year, month, day).map_err(|_| NotApplicable)
}

/// Full years from `born` to `today`. Someone born on 29 February has a birthday on 1 March in
/// years that have no 29 February.
fn age_at(born: time::Date, today: time::Date) -> i64 {
    let mut years = i64::from(today.year()) - i64::from(born.year());
    let birthday_passed =
        (u8::from(today.month()), today.day()) >= (u8::from(born.month()), born.day());
    if !birthday_passed {
        years -= 1;
    }
    years
}

fn masked(text: &str, mask: Mask) -> String {
    let count = text.chars().count();
    let keep = |i: usize| match mask {
        Mask::KeepLast(n) => i + (n as usize) >= count,
        Mask::KeepFirst(n) => i < n as usize,
    };
    text.chars()
        .enumerate()
        .map(|(i, c)| if keep(i) { c } else { '*' })
        .collect()
}

fn band(generalization: &Generalization, x: f64) -> Result<String, NotApplicable> {
    match generalization {
        Generalization::Step(step) => {
            let step = *step as f64;
            let low = (x / step).floor() * step;
            Ok(format!("{}-{}", low as i64, (low + step) as i64 - 1))
        }
        Generalization::Bands(bounds) => {
            let (first, last) = (
                bounds.first().ok_or(NotApplicable)?,
                bounds.last().ok_or(NotApplicable)?,
            );
            if x < *first as f64 {
                return Ok(format!("<{first}"));
            }
            if x >= *last as f64 {
                return Ok(format!(">={last}"));
            }
            let pair = bounds
                .windows(2)
                .find(|pair| x < pair[1] as f64)
                .ok_or(NotApplicable)?;
            Ok(format!("{}-{}", pair[0], pair[1] - 1))
        }
        Generalization::Year | Generalization::Month => Err(NotApplicable),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn day(y: i32, m: u8, d: u8) -> time::Date {
        time::Date::from_calendar_date(y, time::Month::try_from(m).expect("month"), d)
            .expect("date")
    }

    fn date(y: i32, m: u32, d: u32) -> Value {
        Value {
            kind: Some(Kind::DateValue(Date {
                year: y,
                month: m,
                day: d,
            })),
        }
    }

    fn string(s: &str) -> Value {
        Value {
            kind: Some(Kind::StringValue(s.to_owned())),
        }
    }

    fn int(n: i64) -> Value {
        Value {
            kind: Some(Kind::IntValue(n)),
        }
    }

    fn run(transform: &str, value: &Value) -> Result<Kind, NotApplicable> {
        let transform = Transform::parse(transform).expect("a transform");
        apply(&transform, value, None, day(2026, 6, 1)).map(|v| v.kind.expect("a value"))
    }

    #[test]
    fn mask_keeps_the_asked_characters_counting_unicode_scalars() {
        assert_eq!(
            run("mask(keep_last=4)", &string("FB-2019-004417")),
            Ok(Kind::StringValue("**********4417".into()))
        );
        assert_eq!(
            run("mask(keep_first=2)", &string("مريم")),
            Ok(Kind::StringValue("مر**".into()))
        );
        assert_eq!(
            run("mask(keep_last=10)", &string("abc")),
            Ok(Kind::StringValue("abc".into()))
        );
        assert_eq!(
            run("mask(keep_last=0)", &string("")),
            Ok(Kind::StringValue(String::new()))
        );
        assert_eq!(run("mask(keep_last=2)", &int(5)), Err(NotApplicable));
    }

    #[test]
    fn age_over_counts_full_years_and_leap_day_birthdays() {
        // 21st birthday on 2026-06-01 exactly.
        assert_eq!(
            run("age_over(21)", &date(2005, 6, 1)),
            Ok(Kind::BoolValue(true))
        );
        assert_eq!(
            run("age_over(21)", &date(2005, 6, 2)),
            Ok(Kind::BoolValue(false))
        );
        assert_eq!(
            run("age_over(18)", &date(1960, 1, 1)),
            Ok(Kind::BoolValue(true))
        );
        let leap = Transform::AgeOver(18);
        let born = date(2008, 2, 29);
        let on = |d| apply(&leap, &born, None, d).map(|v| v.kind);
        assert_eq!(on(day(2026, 2, 28)), Ok(Some(Kind::BoolValue(false))));
        assert_eq!(on(day(2026, 3, 1)), Ok(Some(Kind::BoolValue(true))));
        assert_eq!(run("age_over(18)", &date(2001, 2, 30)), Err(NotApplicable));
        assert_eq!(
            run("age_over(18)", &string("2001-01-01")),
            Err(NotApplicable)
        );
    }

    #[test]
    fn dates_become_years_and_months() {
        assert_eq!(run("year_of", &date(1988, 11, 3)), Ok(Kind::IntValue(1988)));
        assert_eq!(
            run("generalize(year)", &date(1988, 11, 3)),
            Ok(Kind::StringValue("1988".into()))
        );
        assert_eq!(
            run("generalize(month)", &date(1988, 1, 3)),
            Ok(Kind::StringValue("1988-01".into()))
        );
        assert_eq!(run("year_of", &date(1988, 13, 3)), Err(NotApplicable));
    }

    #[test]
    fn numbers_become_bands() {
        let step = |n| run("generalize(step=1000)", &int(n));
        assert_eq!(step(4250), Ok(Kind::StringValue("4000-4999".into())));
        assert_eq!(step(0), Ok(Kind::StringValue("0-999".into())));
        assert_eq!(step(-1), Ok(Kind::StringValue("-1000--1".into())));
        let bands = |n| run("generalize(bands=[0,5000,10000])", &int(n));
        assert_eq!(bands(-5), Ok(Kind::StringValue("<0".into())));
        assert_eq!(bands(0), Ok(Kind::StringValue("0-4999".into())));
        assert_eq!(bands(7500), Ok(Kind::StringValue("5000-9999".into())));
        assert_eq!(bands(10000), Ok(Kind::StringValue(">=10000".into())));
        let double = Value {
            kind: Some(Kind::DoubleValue(12345.6)),
        };
        assert_eq!(
            run("generalize(step=1000)", &double),
            Ok(Kind::StringValue("12000-12999".into()))
        );
        let nan = Value {
            kind: Some(Kind::DoubleValue(f64::NAN)),
        };
        assert_eq!(run("generalize(step=1000)", &nan), Err(NotApplicable));
    }

    #[test]
    fn hash_is_keyed_per_consumer_and_deterministic() {
        let key = HashKey::new(&[7u8; 32]).expect("key");
        let hash = |consumer: &str, value: &Value| {
            let consumer_key = key.for_consumer(consumer);
            match apply(
                &Transform::Hash,
                value,
                Some(&consumer_key),
                day(2026, 6, 1),
            ) {
                Ok(Value {
                    kind: Some(Kind::StringValue(hex)),
                }) => hex,
                other => panic!("a hex string, got {other:?}"),
            }
        };
        let spouse = string("784198012345678");
        let a = hash("housing-programme", &spouse);
        assert_eq!(a.len(), 64);
        assert!(a.bytes().all(|b| b.is_ascii_hexdigit()));
        assert_eq!(a, hash("housing-programme", &spouse), "deterministic");
        assert_ne!(a, hash("health-authority", &spouse), "per consumer");
        assert_ne!(a, hash("housing-programme", &string("784198012345679")));
        // Not a plain hash of the value.
        let plain: String = ring::digest::digest(&ring::digest::SHA256, b"784198012345678")
            .as_ref()
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        assert_ne!(a, plain);
        // An int hashes as its digits; no key, no hash.
        assert_eq!(hash("c", &int(42)), hash("c", &string("42")));
        assert_eq!(
            apply(&Transform::Hash, &spouse, None, day(2026, 6, 1)),
            Err(NotApplicable)
        );
        assert!(HashKey::new(&[1u8; 16]).is_err());
    }
}
