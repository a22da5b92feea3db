//! The node's workers: threads that each run their own event loop, over their own connections.
//!
//! A connection from a consumer is handed at accept to the worker with the fewest connections
//! ([`isnad_tls::server::incoming_spread`]) and stays there: its TLS, its HTTP/2 framing, the
//! pipeline of each of its requests and the HTTP/2 connection to the provider that a request
//! goes out on ([`Worker::current`] picks it) all run on that one thread. A request crosses no
//! thread on its way through, so it pays no cross-thread wake-up and no cache line moving
//! between cores; on the benchmark this took a fifth off the gateway's CPU per request (bench/
//! README). Envoy and nginx are built the same way. What the workers share (the policy in
//! force, the agencies' limits, the audit trail) is behind `Arc`s and atomics as before.
//!
//! The price is that a worker cannot take over another's connections: a node whose load comes
//! over fewer connections than it has workers leaves some idle. gRPC clients keep a few
//! long-lived connections; each consumer agency should open at least as many as the node has
//! workers (the load generator in `bench/` opens four to a two-worker node).

use std::cell::Cell;
use std::future::Future;
use std::num::NonZeroUsize;

use anyhow::Context as _;
use tokio::runtime::{Handle, Runtime};
use tokio::task::JoinHandle;

thread_local! {
    static CURRENT: Cell<Option<Worker>> = const { Cell::new(None) };
}

/// Which of the node's workers a thread is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Worker {
    /// From 0.
    pub index: usize,
    /// How many the node has.
    pub count: usize,
}

impl Worker {
    /// The worker this thread is, or `None` on any other thread.
    pub fn current() -> Option<Worker> {
        CURRENT.with(Cell::get)
    }
}

/// The number of workers `configured` asks for: itself, or one per core when it is 0.
pub fn count(configured: usize) -> usize {
    if configured > 0 {
        return configured;
    }
    std::thread::available_parallelism().map_or(1, NonZeroUsize::get)
}

/// The workers' event loops, each running on its own thread. Dropping them stops the threads
/// and drops every task left on them (their provider connections among them), without waiting.
#[derive(Debug)]
pub struct Workers {
    runtimes: Vec<Runtime>,
}

impl Workers {
    /// Starts `count` workers (at least one), with nothing to do yet.
    pub fn new(count: usize) -> anyhow::Result<Workers> {
        let count = count.max(1);
        let runtimes = (0..count)
            .map(|index| {
                // Tokio's multi-thread scheduler with one thread, rather than its current-thread
                // one: in the benchmark it gave the gateway fewer system calls per request (its
                // wake-ups of a task just made ready run it next, on a warm cache) and half
                // of direct's throughput where the current-thread scheduler did not.
                tokio::runtime::Builder::new_multi_thread()
                    .worker_threads(1)
                    .thread_name(format!("isnad-worker-{index}"))
                    // Every thread of the worker knows it is one: its event loop's, and those
                    // of its pool for blocking work.
                    .on_thread_start(move || {
                        CURRENT.with(|current| current.set(Some(Worker { index, count })));
                    })
                    .enable_all()
                    .build()
                    .with_context(|| format!("cannot start worker {index}"))
            })
            .collect::<anyhow::Result<_>>()?;
        Ok(Workers { runtimes })
    }

    /// The handles of the workers' event loops, in order.
    pub fn handles(&self) -> Vec<Handle> {
        self.runtimes
            .iter()
            .map(|runtime| runtime.handle().clone())
            .collect()
    }

    /// Runs `work(index)` on each worker; the handles give each result, in order.
    pub fn spawn<F, Fut>(&self, mut work: F) -> Vec<JoinHandle<Fut::Output>>
    where
        F: FnMut(usize) -> Fut,
        Fut: Future + Send + 'static,
        Fut::Output: Send + 'static,
    {
        self.runtimes
            .iter()
            .enumerate()
            .map(|(index, runtime)| runtime.spawn(work(index)))
            .collect()
    }
}

impl Drop for Workers {
    fn drop(&mut self) {
        // Dropping a runtime waits for its threads, which an async caller must not do.
        for runtime in self.runtimes.drain(..) {
            runtime.shutdown_background();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn zero_workers_means_one_per_core_and_a_number_is_kept() {
        assert_eq!(count(3), 3);
        let cores = std::thread::available_parallelism().map_or(1, NonZeroUsize::get);
        assert_eq!(count(0), cores);
    }

    #[test]
    fn each_worker_runs_its_work_on_its_own_thread_and_knows_which_it_is() {
        let workers = Workers::new(3).expect("workers");
        let done = workers.spawn(|index| async move {
            // A task the work spawns runs on the same worker.
            let spawned = tokio::spawn(async { Worker::current() })
                .await
                .expect("task");
            let name = std::thread::current().name().map(str::to_owned);
            (index, Worker::current(), spawned, name)
        });
        let waiter = tokio::runtime::Builder::new_current_thread()
            .build()
            .expect("runtime");
        let mut threads = std::collections::BTreeSet::new();
        for (expected, handle) in done.into_iter().enumerate() {
            let (index, me, spawned, name) = waiter.block_on(handle).expect("worker result");
            let me = me.expect("a worker's thread");
            assert_eq!(index, expected);
            assert_eq!(me, Worker { index, count: 3 });
            assert_eq!(spawned, Some(me));
            assert_eq!(
                name.as_deref(),
                Some(format!("isnad-worker-{index}").as_str())
            );
            threads.insert(name);
        }
        assert_eq!(threads.len(), 3);
        assert_eq!(
            Worker::current(),
            None,
            "the test's own thread is no worker"
        );
        drop(workers);
    }
}
