//! The policy in force, and reloading it without a restart.
//!
//! A reload reads the store's directory, validates and compiles it as of today, checks its
//! signature when the configuration names a security-team key, and only then swaps it in with
//! one atomic pointer store. Requests in flight keep the policy they started with (they hold an
//! `Arc` to it); new requests see the new one. A store with any error, a missing or bad
//! signature, or a `hash` transform without a hash key is refused, with every error, and the
//! running policy stays. Three things trigger a reload: the store's content changing on disk
//! (polled: see [`PolicyStore::poll`]), SIGHUP, and the `Admin.ReloadPolicy` RPC.
//!
//! Polling, rather than inotify, because it sees every way a store is replaced (an editor's
//! rename, `git pull`, a Kubernetes ConfigMap's symlink swap) on every filesystem, and reading
//! a store's few files once a second costs well under a millisecond. A reload changes nothing
//! when the content's revision is the same.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use arc_swap::ArcSwap;
use isnad_policy::{LoadErrors, PolicySet, SignatureError, Sources, Transform, VerifyingKey};
use isnad_tls::LiveTls;

use crate::pipeline::Upstreams;

/// A policy and the provider channels its catalogue names.
#[derive(Debug)]
pub struct Current {
    /// The compiled policy.
    pub policy: PolicySet,
    /// Channels to the providers of its catalogue.
    pub upstreams: Arc<Upstreams>,
    /// The endpoints the channels were made for: the federation, then agency -> endpoint.
    endpoints: (String, BTreeMap<String, String>),
    /// When it was swapped in.
    pub loaded_at: SystemTime,
}

/// Why a store was refused.
#[derive(Debug, thiserror::Error)]
pub enum ReloadError {
    /// It has validation errors.
    #[error("{0}")]
    Invalid(LoadErrors),
    /// Its signature is missing or wrong.
    #[error("policy signature: {0}")]
    Signature(SignatureError),
    /// It is valid, but this gateway cannot run it.
    #[error("{0}")]
    Unusable(String),
}

impl ReloadError {
    /// The stable reason code.
    pub fn reason(&self) -> &'static str {
        match self {
            ReloadError::Invalid(_) => "policy_invalid",
            ReloadError::Signature(_) => "policy_signature",
            ReloadError::Unusable(_) => "policy_unusable",
        }
    }
}

/// What a successful reload did.
#[derive(Debug, Clone)]
pub struct Reloaded {
    /// The revision in force before.
    pub previous: String,
    /// The revision in force now.
    pub revision: String,
    /// Whether the content changed (if not, nothing was swapped).
    pub changed: bool,
    /// Rules in force now.
    pub rules: usize,
}

/// What this gateway can run: a store that needs more is refused (`policy_unusable`).
#[derive(Debug, Clone, Copy, Default)]
pub struct Capabilities {
    /// A `hash_key` is configured (rules may use `hash`).
    pub hash_key: bool,
    /// Consent tokens are verified (rules may require consent).
    pub consent: bool,
}

/// What building provider channels needs.
#[derive(Debug)]
pub struct UpstreamSettings {
    /// Endpoint overrides by agency id.
    pub overrides: BTreeMap<String, String>,
    /// The gateway's TLS material (it presents its certificate to providers).
    pub tls: Arc<LiveTls>,
    /// Connections per provider, reply size, circuit breaker.
    pub limits: crate::config::Limits,
}

/// The policy in force and how to reload it.
#[derive(Debug)]
pub struct PolicyStore {
    dir: PathBuf,
    signing_key: Option<VerifyingKey>,
    capabilities: Capabilities,
    upstream: UpstreamSettings,
    current: ArcSwap<Current>,
    /// Serializes reloads; holds the revision and errors of the last refused store.
    last_refused: Mutex<Option<(String, String)>>,
}

impl PolicyStore {
    /// Loads the store in `dir`; any error stops here.
    pub fn load(
        dir: PathBuf,
        signing_key: Option<VerifyingKey>,
        capabilities: Capabilities,
        upstream: UpstreamSettings,
    ) -> Result<PolicyStore, ReloadError> {
        let (sources, policy) = read_and_check(&dir, signing_key.as_ref(), capabilities)?;
        drop(sources);
        let current = make_current(policy, &upstream, None)?;
        Ok(PolicyStore {
            dir,
            signing_key,
            capabilities,
            upstream,
            current: ArcSwap::from_pointee(current),
            last_refused: Mutex::new(None),
        })
    }

    /// The policy in force. Hold the `Arc` for the whole request.
    pub fn current(&self) -> Arc<Current> {
        self.current.load_full()
    }

    /// The errors of the last refused store since the last successful reload, if any.
    pub fn last_error(&self) -> Option<String> {
        self.last_refused
            .lock()
            .ok()
            .and_then(|last| last.as_ref().map(|(_, errors)| errors.clone()))
    }

    /// Reloads now (blocking: file reads and compilation). Why it ran goes in the log.
    pub fn reload(&self, trigger: &str) -> Result<Reloaded, ReloadError> {
        let mut last_refused = self
            .last_refused
            .lock()
            .map_err(|_| ReloadError::Unusable("a previous reload panicked".into()))?;
        let previous = self.current.load();
        let previous_revision = previous.policy.revision().to_string();
        let outcome = read_and_check(&self.dir, self.signing_key.as_ref(), self.capabilities)
            .and_then(|(_, policy)| {
                if policy.revision() == previous.policy.revision() {
                    return Ok(None);
                }
                make_current(policy, &self.upstream, Some(&previous)).map(Some)
            });
        match outcome {
            Ok(None) => {
                *last_refused = None;
                Ok(Reloaded {
                    revision: previous_revision.clone(),
                    previous: previous_revision,
                    changed: false,
                    rules: previous.policy.rule_count(),
                })
            }
            Ok(Some(next)) => {
                let reloaded = Reloaded {
                    previous: previous_revision,
                    revision: next.policy.revision().to_string(),
                    changed: true,
                    rules: next.policy.rule_count(),
                };
                self.current.store(Arc::new(next));
                *last_refused = None;
                tracing::info!(
                    trigger,
                    previous = %reloaded.previous,
                    revision = %reloaded.revision,
                    rules = reloaded.rules,
                    "policy reloaded"
                );
                Ok(reloaded)
            }
            Err(error) => {
                let revision = Sources::read_dir(&self.dir)
                    .map(|s| s.revision().to_string())
                    .unwrap_or_default();
                tracing::error!(
                    trigger,
                    reason = error.reason(),
                    running = %previous_revision,
                    "policy reload refused; the running policy stays:\n{error}"
                );
                *last_refused = Some((revision, error.to_string()));
                Err(error)
            }
        }
    }

    /// Reloads if the content on disk differs from the policy in force and from the last
    /// refused content (so a broken store is reported once, not every poll).
    pub fn poll(&self) {
        let Ok(sources) = Sources::read_dir(&self.dir) else {
            // Unreadable mid-replacement, or gone: report it through a reload once.
            let refused = self.last_refused.lock().ok().and_then(|l| l.clone());
            if refused.is_none_or(|(revision, _)| !revision.is_empty()) {
                let _ = self.reload("file change");
            }
            return;
        };
        let revision = sources.revision().to_string();
        if revision == self.current.load().policy.revision().as_str() {
            return;
        }
        let refused_same = self
            .last_refused
            .lock()
            .ok()
            .is_some_and(|last| last.as_ref().is_some_and(|(r, _)| *r == revision));
        if !refused_same {
            let _ = self.reload("file change");
        }
    }
}

fn read_and_check(
    dir: &std::path::Path,
    signing_key: Option<&VerifyingKey>,
    capabilities: Capabilities,
) -> Result<(Sources, PolicySet), ReloadError> {
    let sources = Sources::read_dir(dir).map_err(ReloadError::Invalid)?;
    let policy =
        PolicySet::compile(&sources, isnad_policy::today_utc()).map_err(ReloadError::Invalid)?;
    if let Some(key) = signing_key {
        let signature = match std::fs::read(dir.join(isnad_policy::SIGNATURE_FILE)) {
            Ok(bytes) => Some(bytes),
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => None,
            Err(error) => {
                return Err(ReloadError::Unusable(format!(
                    "cannot read {}: {error}",
                    isnad_policy::SIGNATURE_FILE
                )));
            }
        };
        key.verify(signature.as_deref(), policy.revision())
            .map_err(ReloadError::Signature)?;
    }
    check_capabilities(&policy, capabilities)?;
    Ok((sources, policy))
}

/// Refuses a store whose rules need what this gateway is not configured for, naming the first
/// rule that does and the setting that is missing.
fn check_capabilities(policy: &PolicySet, capabilities: Capabilities) -> Result<(), ReloadError> {
    let rules = policy.rules();
    let missing = |rule: &isnad_policy::Rule, needs: &str, setting: &str| {
        ReloadError::Unusable(format!(
            "rule {} ({}) {needs}, but the gateway has no {setting}: set `{setting}` in its \
             configuration",
            rule.id, rule.location
        ))
    };
    if !capabilities.hash_key
        && let Some(rule) = rules.iter().find(|rule| {
            rule.fields
                .iter()
                .any(|(_, t)| *t == isnad_policy::Treatment::Transform(Transform::Hash))
        })
    {
        return Err(missing(rule, "uses `hash`", "hash_key"));
    }
    if !capabilities.consent
        && let Some(rule) = rules.iter().find(|rule| rule.consent_required)
    {
        return Err(missing(rule, "requires consent", "consent"));
    }
    Ok(())
}

fn endpoints(policy: &PolicySet, overrides: &BTreeMap<String, String>) -> BTreeMap<String, String> {
    policy
        .catalogue()
        .agencies
        .values()
        .filter_map(|agency| {
            let endpoint = overrides
                .get(agency.id.as_str())
                .or(agency.endpoint.as_ref())?;
            Some((agency.id.as_str().to_owned(), endpoint.clone()))
        })
        .collect()
}

/// The new policy with channels: the previous ones when the providers' endpoints are the same
/// (connections stay up), new lazy ones otherwise.
fn make_current(
    policy: PolicySet,
    upstream: &UpstreamSettings,
    previous: Option<&Current>,
) -> Result<Current, ReloadError> {
    let endpoints = (
        policy.catalogue().federation.clone(),
        endpoints(&policy, &upstream.overrides),
    );
    let upstreams = match previous {
        Some(previous) if previous.endpoints == endpoints => previous.upstreams.clone(),
        _ => Arc::new(
            Upstreams::new(
                policy.catalogue(),
                &upstream.overrides,
                &upstream.tls,
                &upstream.limits,
            )
            .map_err(|e| ReloadError::Unusable(format!("provider channels: {e:#}")))?,
        ),
    };
    Ok(Current {
        policy,
        upstreams,
        endpoints,
        loaded_at: SystemTime::now(),
    })
}
