//! From a treatment as written to a [`Treatment`], with messages that say what to write instead.

use crate::rule::{Generalization, Mask, Transform, Treatment};
use crate::source::{ArgDoc, OptionDoc, TreatmentDoc};

const KINDS: &str = "allow, deny, hash, or `mask:`, `derive:`, `generalize:` with an argument";

/// The treatment `doc` names, or why it names none.
pub(crate) fn from_doc(doc: &TreatmentDoc) -> Result<Treatment, String> {
    match doc {
        TreatmentDoc::Word(word) => match word.as_str() {
            "allow" => Ok(Treatment::Allow),
            "deny" => Ok(Treatment::Deny),
            "hash" => Ok(Treatment::Transform(Transform::Hash)),
            "mask" => Err("mask needs an argument, e.g. `mask: {keep_last: 4}`".into()),
            "derive" => Err("derive needs an argument, e.g. `derive: age_over(18)`".into()),
            "generalize" => Err("generalize needs an argument, e.g. `generalize: year`".into()),
            other => Err(format!("unknown treatment {other:?}; use {KINDS}")),
        },
        TreatmentDoc::Map(entries) => {
            let [(kind, arg)] = entries.as_slice() else {
                return Err(format!(
                    "a transform is a map with exactly one key, not {}; use {KINDS}",
                    entries.len()
                ));
            };
            let transform = match kind.as_str() {
                "mask" => mask(arg)?,
                "derive" => derive(arg)?,
                "generalize" => generalize(arg)?,
                "hash" => return Err("hash takes no argument: write `hash`".into()),
                "allow" | "deny" => {
                    return Err(format!("{kind} takes no argument: write `{kind}`"));
                }
                other => return Err(format!("unknown transform {other:?}; use {KINDS}")),
            };
            Ok(Treatment::Transform(transform))
        }
    }
}

fn mask(arg: &ArgDoc) -> Result<Transform, String> {
    const HELP: &str = "mask takes `{keep_last: N}` or `{keep_first: N}`";
    let ArgDoc::Options(options) = arg else {
        return Err(HELP.into());
    };
    let [(key, value)] = options.as_slice() else {
        return Err(HELP.into());
    };
    let n = count(value).ok_or_else(|| format!("{HELP}, N a whole number from 0 to 64"))?;
    match key.as_str() {
        "keep_last" => Ok(Transform::Mask(Mask::KeepLast(n))),
        "keep_first" => Ok(Transform::Mask(Mask::KeepFirst(n))),
        other => Err(format!("{HELP}, not {other:?}")),
    }
}

fn count(value: &OptionDoc) -> Option<u32> {
    match value {
        OptionDoc::Number(n) if n.fract() == 0.0 && (0.0..=64.0).contains(n) => Some(*n as u32),
        _ => None,
    }
}

fn derive(arg: &ArgDoc) -> Result<Transform, String> {
    const HELP: &str = "derive takes `age_over(N)` (N from 1 to 150) or `year_of`";
    let ArgDoc::Text(text) = arg else {
        return Err(HELP.into());
    };
    match Transform::parse(text) {
        Some(Transform::AgeOver(n)) if (1..=150).contains(&n) => Ok(Transform::AgeOver(n)),
        Some(Transform::YearOf) => Ok(Transform::YearOf),
        _ => Err(format!("{HELP}, not {text:?}")),
    }
}

fn generalize(arg: &ArgDoc) -> Result<Transform, String> {
    const HELP: &str = "generalize takes `year` or `month` (dates), `{step: N}` or \
                        `{bands: [b1, b2, ...]}` (numbers)";
    match arg {
        ArgDoc::Text(text) if text == "year" => Ok(Transform::Generalize(Generalization::Year)),
        ArgDoc::Text(text) if text == "month" => Ok(Transform::Generalize(Generalization::Month)),
        ArgDoc::Options(options) => {
            let [(key, value)] = options.as_slice() else {
                return Err(HELP.into());
            };
            match (key.as_str(), value) {
                ("step", OptionDoc::Number(step))
                    if step.fract() == 0.0 && *step >= 1.0 && *step <= 1e15 =>
                {
                    Ok(Transform::Generalize(Generalization::Step(*step as i64)))
                }
                ("step", _) => Err("step is a whole number of at least 1".into()),
                ("bands", OptionDoc::Numbers(bounds)) => {
                    let whole = bounds.iter().all(|b| b.fract() == 0.0 && b.abs() <= 1e15);
                    if bounds.is_empty() || bounds.len() > 64 || !whole {
                        return Err("bands is a list of 1 to 64 whole numbers".into());
                    }
                    let bounds: Vec<i64> = bounds.iter().map(|b| *b as i64).collect();
                    if bounds.windows(2).any(|pair| pair[0] >= pair[1]) {
                        return Err("bands must be in strictly ascending order".into());
                    }
                    Ok(Transform::Generalize(Generalization::Bands(bounds)))
                }
                ("bands", _) => Err("bands is a list of whole numbers".into()),
                (other, _) => Err(format!("{HELP}, not {other:?}")),
            }
        }
        ArgDoc::Text(text) => Err(format!("{HELP}, not {text:?}")),
        _ => Err(HELP.into()),
    }
}
