//! The in-process back-end: one node's state behind a mutex. Every operation is a few map
//! lookups under the lock, so the lock is never held across an await or for long.

use std::collections::HashMap;
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, SystemTime};

use crate::{Admission, ConsentState, Refusal, StateError, Verdict, key, validate, window_of};

/// The default bound on live entries (request ids, revocations, use counters, windows).
pub const DEFAULT_CAPACITY: usize = 1_000_000;

/// Sweeping expired entries waits until the state has at least this many.
const SWEEP_FLOOR: usize = 1024;

/// The in-process state, for a gateway that runs as one node.
#[derive(Debug)]
pub struct MemoryState {
    inner: Mutex<Inner>,
    capacity: usize,
}

#[derive(Debug, Default)]
struct Inner {
    /// (consumer, request id) -> remembered until.
    requests: HashMap<String, SystemTime>,
    /// consent id -> revoked until.
    revoked: HashMap<String, SystemTime>,
    /// consent id -> (uses, kept until).
    uses: HashMap<String, (u64, SystemTime)>,
    /// (rule, consumer, subject, dataset, window length) -> (window index, count, kept until).
    windows: HashMap<String, (u64, u32, SystemTime)>,
    /// agency -> (theoretical arrival time of its next request in microseconds since the Unix
    /// epoch, kept until: once now is past it, the agency is back to its full burst).
    agencies: HashMap<String, (u64, SystemTime)>,
    /// The number of entries after the last sweep.
    after_sweep: usize,
}

impl Inner {
    fn len(&self) -> usize {
        self.requests.len()
            + self.revoked.len()
            + self.uses.len()
            + self.windows.len()
            + self.agencies.len()
    }

    /// Drops every expired entry.
    fn sweep(&mut self, now: SystemTime) {
        self.requests.retain(|_, until| *until > now);
        self.revoked.retain(|_, until| *until > now);
        self.uses.retain(|_, (_, until)| *until > now);
        self.windows.retain(|_, (_, _, until)| *until > now);
        self.agencies.retain(|_, (_, until)| *until > now);
        self.after_sweep = self.len();
    }

    /// Sweeps when the state has doubled since the last sweep: amortised constant time per
    /// entry, and memory bounded by twice the live entries.
    fn maybe_sweep(&mut self, now: SystemTime) {
        if self.len() >= (2 * self.after_sweep).max(SWEEP_FLOOR) {
            self.sweep(now);
        }
    }

    /// Makes room for `adding` entries, or says the state is full.
    fn reserve(
        &mut self,
        adding: usize,
        capacity: usize,
        now: SystemTime,
    ) -> Result<(), StateError> {
        if self.len() + adding > capacity {
            self.sweep(now);
        }
        if self.len() + adding > capacity {
            return Err(StateError::Full { entries: capacity });
        }
        Ok(())
    }
}

impl MemoryState {
    /// An empty state holding at most [`DEFAULT_CAPACITY`] live entries.
    pub fn new() -> MemoryState {
        MemoryState::with_capacity(DEFAULT_CAPACITY)
    }

    /// An empty state holding at most `capacity` live entries.
    pub fn with_capacity(capacity: usize) -> MemoryState {
        MemoryState {
            inner: Mutex::new(Inner::default()),
            capacity,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        // Updates below cannot panic half-way, so a poisoned lock still guards consistent maps.
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn admit_now(&self, admission: &Admission<'_>) -> Result<Verdict, StateError> {
        validate(admission)?;
        let now = admission.now;
        let mut inner = self.lock();
        inner.maybe_sweep(now);

        // Check everything first.
        let agency = match admission.agency {
            None => None,
            Some(rate) => {
                let now_us = unix_us(now);
                let tat = inner.agencies.get(rate.agency).map_or(0, |(tat, _)| *tat);
                match rate.step(tat, now_us) {
                    Ok(next) => Some((rate.agency, next, now_us)),
                    Err(retry_after) => {
                        return Ok(Verdict::Refused(Refusal::AgencyRateLimited { retry_after }));
                    }
                }
            }
        };
        let request_key = admission
            .request
            .map(|guard| key(&[guard.consumer, guard.request_id]));
        if let Some(request_key) = &request_key
            && inner
                .requests
                .get(request_key)
                .is_some_and(|until| *until > now)
        {
            return Ok(Verdict::Refused(Refusal::Replayed));
        }
        let mut uses = None;
        if let Some(consent) = admission.consent {
            if inner
                .revoked
                .get(consent.id)
                .is_some_and(|until| *until > now)
            {
                return Ok(Verdict::Refused(Refusal::Revoked));
            }
            if let Some(max) = consent.max_uses {
                let used = inner
                    .uses
                    .get(consent.id)
                    .filter(|(_, until)| *until > now)
                    .map_or(0, |(used, _)| *used);
                if used >= max {
                    return Ok(Verdict::Refused(Refusal::UsesExhausted));
                }
                uses = Some(used + 1);
            }
        }
        let mut windows = Vec::with_capacity(admission.rates.len());
        for rate in admission.rates {
            let (index, left) = window_of(now, rate.window);
            let window_key = key(&[
                rate.rule,
                rate.consumer,
                rate.subject,
                rate.dataset,
                &rate.window.as_secs().to_string(),
            ]);
            let count = inner
                .windows
                .get(&window_key)
                .filter(|(at, _, _)| *at == index)
                .map_or(0, |(_, count, _)| *count);
            if count >= rate.limit {
                return Ok(Verdict::Refused(Refusal::RateLimited { retry_after: left }));
            }
            windows.push((window_key, index, count + 1, now + left));
        }

        // Then record it all.
        let adding = usize::from(request_key.is_some())
            + usize::from(uses.is_some())
            + windows.len()
            + agency.map_or(0, |(name, _, _)| {
                usize::from(!inner.agencies.contains_key(name))
            });
        inner.reserve(adding, self.capacity, now)?;
        if let Some((name, next, now_us)) = agency {
            let until = now + Duration::from_micros(next - now_us);
            inner.agencies.insert(name.to_owned(), (next, until));
        }
        if let (Some(request_key), Some(guard)) = (request_key, admission.request) {
            inner.requests.insert(request_key, now + guard.ttl);
        }
        if let (Some(used), Some(consent)) = (uses, admission.consent) {
            inner
                .uses
                .insert(consent.id.to_owned(), (used, consent.expires_at));
        }
        for (window_key, index, count, until) in windows {
            inner.windows.insert(window_key, (index, count, until));
        }
        Ok(Verdict::Admitted { uses })
    }

    fn revoke_now(
        &self,
        consent_id: &str,
        expires_at: SystemTime,
        now: SystemTime,
    ) -> Result<(), StateError> {
        if consent_id.is_empty() {
            return Err(StateError::Invalid("empty consent id"));
        }
        if expires_at <= now {
            // Expired consents are refused for their `exp`; there is nothing to keep.
            return Ok(());
        }
        let mut inner = self.lock();
        inner.maybe_sweep(now);
        if !inner.revoked.contains_key(consent_id) {
            inner.reserve(1, self.capacity, now)?;
        }
        let until = inner
            .revoked
            .entry(consent_id.to_owned())
            .or_insert(expires_at);
        *until = (*until).max(expires_at);
        Ok(())
    }
}

/// Microseconds since the Unix epoch (0 before it).
fn unix_us(time: SystemTime) -> u64 {
    time.duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |since| {
            u64::try_from(since.as_micros()).unwrap_or(u64::MAX)
        })
}

impl Default for MemoryState {
    fn default() -> MemoryState {
        MemoryState::new()
    }
}

impl ConsentState for MemoryState {
    async fn admit(&self, admission: &Admission<'_>) -> Result<Verdict, StateError> {
        self.admit_now(admission)
    }

    async fn revoke(
        &self,
        consent_id: &str,
        expires_at: SystemTime,
        now: SystemTime,
    ) -> Result<(), StateError> {
        self.revoke_now(consent_id, expires_at, now)
    }

    async fn is_revoked(&self, consent_id: &str, now: SystemTime) -> Result<bool, StateError> {
        Ok(self
            .lock()
            .revoked
            .get(consent_id)
            .is_some_and(|until| *until > now))
    }
}
