//! The scheduler: `parallel` URLs at a time, at most
//! [`PER_HOST_LIMIT`](super::config::PER_HOST_LIMIT) of one host, memory
//! bounded whatever the list size.
//!
//! Entries are pulled from a lazy iterator into a small look-ahead window
//! (a few times `parallel`), so a long run of URLs on one host does not stall
//! the others and the list is never held in memory. Only `parallel` tasks
//! exist at any time. Finished tasks are handed to `on_done` in this task,
//! one at a time, so the results file has a single writer. On cancellation
//! no new URL starts; the tasks in flight see the same token, return
//! promptly (marked as interrupted by the measure function) and are still
//! handed to `on_done`.

use std::collections::{HashMap, VecDeque};
use std::future::Future;

use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::testlist::{host_of, Entry};

/// How a scheduled run ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Ended {
    /// Every entry was measured.
    Completed,
    /// Cancelled: the in-flight URLs were handed over, the rest not started.
    Cancelled,
}

/// Runs `measure` over `entries`. `on_done` receives each result; an error
/// from it stops the run (the tasks still running are aborted).
pub async fn run<T, F, Fut, E>(
    entries: impl Iterator<Item = Entry>,
    parallel: usize,
    per_host: usize,
    cancel: CancellationToken,
    measure: F,
    mut on_done: impl FnMut(T) -> Result<(), E>,
) -> Result<Ended, E>
where
    T: Send + 'static,
    F: Fn(Entry, CancellationToken) -> Fut,
    Fut: Future<Output = T> + Send + 'static,
{
    let parallel = parallel.max(1);
    let per_host = per_host.max(1);
    let lookahead = (parallel * 4).max(64);
    let mut entries = entries.fuse();
    let mut window: VecDeque<(String, Entry)> = VecDeque::new();
    let mut in_flight: HashMap<String, usize> = HashMap::new();
    let mut set: JoinSet<T> = JoinSet::new();
    let mut hosts: HashMap<tokio::task::Id, String> = HashMap::new();
    let mut exhausted = false;

    loop {
        if !cancel.is_cancelled() {
            while !exhausted && window.len() < lookahead {
                match entries.next() {
                    Some(e) => window.push_back((host_of(&e.url), e)),
                    None => exhausted = true,
                }
            }
            while set.len() < parallel {
                let Some(i) = window
                    .iter()
                    .position(|(h, _)| in_flight.get(h).copied().unwrap_or(0) < per_host)
                else {
                    break;
                };
                let Some((host, entry)) = window.remove(i) else {
                    break;
                };
                *in_flight.entry(host.clone()).or_default() += 1;
                let handle = set.spawn(measure(entry, cancel.clone()));
                hosts.insert(handle.id(), host);
            }
        }
        if set.is_empty() {
            let done = cancel.is_cancelled() || (exhausted && window.is_empty());
            if done {
                break;
            }
            continue;
        }
        let joined = tokio::select! {
            j = set.join_next_with_id() => j,
            _ = cancel.cancelled(), if !cancel.is_cancelled() => continue,
        };
        let (id, out) = match joined {
            Some(Ok((id, out))) => (id, Some(out)),
            // A task that panicked: its URL is lost, the run goes on. This
            // does not happen with measurement code that records failures.
            // `gatewatch run` installs no tracing subscriber, so say it on
            // stderr like the run's other warnings.
            Some(Err(e)) => {
                eprintln!("gatewatch: warning: a measurement failed ({e}); its URL has no result");
                (e.id(), None)
            }
            None => continue,
        };
        if let Some(host) = hosts.remove(&id) {
            if let Some(n) = in_flight.get_mut(&host) {
                *n -= 1;
                if *n == 0 {
                    in_flight.remove(&host);
                }
            }
        }
        if let Some(out) = out {
            on_done(out)?;
        }
    }
    Ok(if cancel.is_cancelled() {
        Ended::Cancelled
    } else {
        Ended::Completed
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::{Arc, Mutex};
    use std::time::Duration;

    fn entries(n: usize, hosts: usize) -> impl Iterator<Item = Entry> {
        (0..n).map(move |i| Entry {
            url: format!("https://h{}.example/{i}", i % hosts),
            category_code: String::new(),
        })
    }

    #[derive(Default)]
    struct Counters {
        now: AtomicUsize,
        max: AtomicUsize,
        per_host: Mutex<HashMap<String, (usize, usize)>>,
    }

    #[tokio::test]
    async fn limits_parallelism_and_per_host_concurrency() {
        let c = Arc::new(Counters::default());
        let mut seen = Vec::new();
        let c2 = c.clone();
        let ended = run(
            entries(200, 5),
            8,
            2,
            CancellationToken::new(),
            move |e, _| {
                let c = c2.clone();
                async move {
                    let host = host_of(&e.url);
                    let n = c.now.fetch_add(1, Ordering::SeqCst) + 1;
                    c.max.fetch_max(n, Ordering::SeqCst);
                    {
                        let mut m = c.per_host.lock().unwrap();
                        let x = m.entry(host.clone()).or_default();
                        x.0 += 1;
                        x.1 = x.1.max(x.0);
                    }
                    tokio::time::sleep(Duration::from_millis(2)).await;
                    c.per_host.lock().unwrap().get_mut(&host).unwrap().0 -= 1;
                    c.now.fetch_sub(1, Ordering::SeqCst);
                    e.url
                }
            },
            |u: String| -> Result<(), ()> {
                seen.push(u);
                Ok(())
            },
        )
        .await
        .unwrap();
        assert_eq!(ended, Ended::Completed);
        assert_eq!(seen.len(), 200);
        // 5 hosts x 2 = 10 > 8, so the global limit binds.
        assert_eq!(c.max.load(Ordering::SeqCst), 8);
        for (h, (_, max)) in c.per_host.lock().unwrap().iter() {
            assert_eq!(*max, 2, "{h}");
        }
    }

    #[tokio::test]
    async fn cancellation_hands_over_in_flight_and_starts_nothing_new() {
        let cancel = CancellationToken::new();
        let started = Arc::new(AtomicUsize::new(0));
        let s2 = started.clone();
        let cancel2 = cancel.clone();
        let mut results = Vec::new();
        let ended = run(
            entries(1000, 1000),
            4,
            2,
            cancel.clone(),
            move |e, tok: CancellationToken| {
                let s = s2.clone();
                let cancel = cancel2.clone();
                async move {
                    if s.fetch_add(1, Ordering::SeqCst) == 5 {
                        cancel.cancel();
                    }
                    tokio::select! {
                        _ = tok.cancelled() => (e.url, true),
                        _ = tokio::time::sleep(Duration::from_millis(1)) => (e.url, false),
                    }
                }
            },
            |r: (String, bool)| -> Result<(), ()> {
                results.push(r);
                Ok(())
            },
        )
        .await
        .unwrap();
        assert_eq!(ended, Ended::Cancelled);
        let n = started.load(Ordering::SeqCst);
        assert_eq!(results.len(), n, "every started URL is handed over");
        assert!(n < 20, "{n} started after cancellation");
        assert!(results.iter().any(|(_, interrupted)| *interrupted));
    }
}
