//! `isnad policy ...`: the security team's tools for a policy store.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::Subcommand;
use isnad_policy::{Date, LoadErrors, PolicySet, Sources};

#[derive(Debug, Subcommand)]
pub(crate) enum PolicyCommand {
    /// Validate a policy store; print every error with file:line:column.
    Check {
        /// The store: a directory with catalogue.yaml and rules/.
        dir: PathBuf,
        /// Validate as of this day (YYYY-MM-DD) instead of today: windows that ended before it
        /// are errors.
        #[arg(long)]
        date: Option<String>,
    },
    /// Run the store's test cases (DIR/tests/*.yaml); exit 1 if any fails.
    Test {
        /// The store.
        dir: PathBuf,
        /// Decide as of this day (YYYY-MM-DD) unless a case names its own [default: today].
        #[arg(long)]
        date: Option<String>,
    },
    /// Show, per field, which rule decides a request and why.
    Explain {
        /// The store.
        dir: PathBuf,
        /// The consumer agency.
        #[arg(long)]
        consumer: String,
        /// The dataset.
        #[arg(long)]
        dataset: String,
        /// The purpose.
        #[arg(long)]
        purpose: String,
        /// The fields, comma-separated [default: every field of the dataset].
        #[arg(long, value_delimiter = ',')]
        fields: Vec<String>,
        /// Decide as of this day (YYYY-MM-DD) [default: today].
        #[arg(long)]
        date: Option<String>,
    },
    /// List the grants (consumer, dataset, purpose, field) added, removed or changed between
    /// two stores.
    Diff {
        /// The store before.
        old: PathBuf,
        /// The store after.
        new: PathBuf,
        /// JSON (one array of changes) instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Make a security-team signing key: PREFIX.key (private, mode 0600) and PREFIX.pub.
    Keygen {
        /// Path prefix of the two files.
        #[arg(long)]
        out: PathBuf,
    },
    /// Sign a store: writes DIR/policy.sig over its current content.
    Sign {
        /// The store.
        dir: PathBuf,
        /// The private key (from `isnad policy keygen`).
        #[arg(long)]
        key: PathBuf,
    },
}

fn day(date: Option<&str>) -> anyhow::Result<Date> {
    match date {
        None => Ok(isnad_policy::today_utc()),
        Some(text) => {
            let format = time::macros::format_description!("[year]-[month]-[day]");
            Date::parse(text, &format)
                .map_err(|_| anyhow::anyhow!("--date {text:?} is not a date; write YYYY-MM-DD"))
        }
    }
}

fn load(dir: &Path, day: Date) -> Result<PolicySet, LoadErrors> {
    PolicySet::compile(&Sources::read_dir(dir)?, day)
}

/// Loads a store or prints its errors.
fn load_or_report(dir: &Path, day: Date) -> Option<PolicySet> {
    match load(dir, day) {
        Ok(set) => Some(set),
        Err(errors) => {
            eprint!("{}: {errors}", dir.display());
            None
        }
    }
}

pub(crate) fn run(command: PolicyCommand) -> anyhow::Result<ExitCode> {
    match command {
        PolicyCommand::Check { dir, date } => {
            let Some(set) = load_or_report(&dir, day(date.as_deref())?) else {
                return Ok(ExitCode::FAILURE);
            };
            let shadow = set
                .rules()
                .iter()
                .filter(|rule| rule.status == isnad_policy::RuleStatus::Shadow)
                .count();
            println!(
                "ok: {} agencies, {} datasets, {} purposes, {} rules ({shadow} shadow); revision {}",
                set.catalogue().agencies.len(),
                set.catalogue().datasets.len(),
                set.catalogue().purposes.len(),
                set.rule_count(),
                set.revision()
            );
            Ok(ExitCode::SUCCESS)
        }
        PolicyCommand::Test { dir, date } => {
            let today = day(date.as_deref())?;
            let Some(set) = load_or_report(&dir, today) else {
                return Ok(ExitCode::FAILURE);
            };
            let report = match isnad_policy::run_cases(&set, &dir, today) {
                Ok(report) => report,
                Err(errors) => {
                    eprint!("{}: the test cases: {errors}", dir.display());
                    return Ok(ExitCode::FAILURE);
                }
            };
            for case in &report.cases {
                let mark = if case.passed() { "pass" } else { "FAIL" };
                println!("{mark}  {}  ({})", case.name, case.location);
                for failure in &case.failures {
                    println!("      {failure}");
                }
            }
            let failed = report.failed();
            println!(
                "{} cases: {} passed, {failed} failed; revision {}",
                report.cases.len(),
                report.cases.len() - failed,
                set.revision()
            );
            Ok(if failed == 0 {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            })
        }
        PolicyCommand::Explain {
            dir,
            consumer,
            dataset,
            purpose,
            fields,
            date,
        } => {
            let today = day(date.as_deref())?;
            let Some(set) = load_or_report(&dir, today) else {
                return Ok(ExitCode::FAILURE);
            };
            let fields = if fields.is_empty() {
                set.catalogue()
                    .datasets
                    .get(dataset.as_str())
                    .map(|d| d.fields.keys().cloned().collect())
                    .unwrap_or_default()
            } else {
                fields
            };
            let explanation =
                isnad_policy::explain(&set, &consumer, &dataset, &purpose, &fields, today);
            print!("{explanation}");
            Ok(ExitCode::SUCCESS)
        }
        PolicyCommand::Diff { old, new, json } => {
            // Both stores as of today; an expired rule in the old store is still shown.
            let today = day(None)?;
            let (Some(before), Some(after)) =
                (load_or_report(&old, today), load_or_report(&new, today))
            else {
                return Ok(ExitCode::FAILURE);
            };
            let changes = isnad_policy::diff(&before, &after);
            if json {
                println!("{}", serde_json::to_string_pretty(&changes)?);
            } else {
                println!("{} -> {}", before.revision(), after.revision());
                for change in &changes {
                    println!("{change}");
                }
                let count = |kind| changes.iter().filter(|c| c.change == kind).count();
                println!(
                    "{} added, {} removed, {} changed",
                    count(isnad_policy::Change::Added),
                    count(isnad_policy::Change::Removed),
                    count(isnad_policy::Change::Changed)
                );
            }
            Ok(ExitCode::SUCCESS)
        }
        PolicyCommand::Keygen { out } => {
            let key = isnad_policy::SigningKey::generate()?;
            let private = out.with_extension("key");
            let public = out.with_extension("pub");
            write_new(&private, key.to_pem().as_bytes(), true)?;
            write_new(
                &public,
                format!("{}\n", key.verifying_key()).as_bytes(),
                false,
            )?;
            println!(
                "key {}: private {} (keep it offline), public {} (give it to every gateway as \
                 policy_signing_key)",
                key.verifying_key().id(),
                private.display(),
                public.display()
            );
            Ok(ExitCode::SUCCESS)
        }
        PolicyCommand::Sign { dir, key } => {
            let pem = std::fs::read_to_string(&key)
                .map_err(|e| anyhow::anyhow!("{}: {e}", key.display()))?;
            let key = isnad_policy::SigningKey::from_pem(&pem)?;
            // Only a valid store is signed.
            let Some(set) = load_or_report(&dir, day(None)?) else {
                return Ok(ExitCode::FAILURE);
            };
            let path = dir.join(isnad_policy::SIGNATURE_FILE);
            std::fs::write(&path, key.sign(set.revision()))
                .map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
            println!(
                "signed revision {} with key {}: {}",
                set.revision(),
                key.verifying_key().id(),
                path.display()
            );
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// Creates a file that must not exist yet (keys are never overwritten).
fn write_new(path: &Path, bytes: &[u8], secret: bool) -> anyhow::Result<()> {
    use std::io::Write;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, if secret { 0o600 } else { 0o644 });
    let mut file = options
        .open(path)
        .map_err(|e| anyhow::anyhow!("cannot create {}: {e}", path.display()))?;
    file.write_all(bytes)?;
    file.sync_all()?;
    Ok(())
}
