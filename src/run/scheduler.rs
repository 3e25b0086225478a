//! The scheduler: `parallel` URLs at a time, at most
//! [`PER_HOST_LIMIT`](super::config::PER_HOST_LIMIT) of one host, memory
//! bounded whatever the list size.
//!
//! Entries are pulled from a lazy iterator into a small look-ahead window
//! (a few times `parallel`), so a long run of URLs on one host does not stall
//! the others and the list is never held in memory. Only `parallel` tasks
//! exist at any time. Finished tasks are handed to `on_done` in this task,
//! one at a time, so the results file has a single writer.
//!
//! [`run_adaptive`] adapts the number of URLs in flight (AIMD, like TCP):
//! it starts at [`START_IN_FLIGHT`] (at most `parallel`), grows by one per
//! finished URL that showed no sign of overload (slow start) until the
//! first sign, then by one per round of `limit` URLs; each sign of
//! overload halves it (not below [`MIN_IN_FLIGHT`]), once per round. What
//! counts as a sign is the caller's to say ([`Load`]). On cancellation
//! no new URL starts; the tasks in flight see the same token, return
//! promptly (marked as interrupted by the measure function) and are still
//! handed to `on_done`.
//!
//! A task may give its slot back before it ends ([`Slot::release`]: its
//! fetch is done, only the DNS listening window is left). It then
//! "finishes" in the background: it no longer counts against the URLs in
//! flight, but still holds its host's share, and is handed to `on_done`
//! (and counted by the load) only when it ends. At most
//! [`FINISHING_PER_SLOT`] × `parallel` tasks (and never more than
//! [`MAX_FINISHING`]) finish at once, so memory stays bounded.

use std::collections::{HashMap, HashSet, VecDeque};
use std::future::Future;

use tokio::sync::mpsc;
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

/// What a finished URL says about the load a run puts on the line and
/// the control.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Load {
    /// No sign of overload.
    Fine,
    /// A sign of overload (the control refused or was too slow, our own
    /// resource limits).
    Overloaded,
}

/// Tasks that gave their slot back and are still finishing, per unit of
/// `parallel` (at most [`MAX_FINISHING`] in all).
pub const FINISHING_PER_SLOT: usize = 4;
/// Tasks finishing at once, whatever `parallel`: each holds its records
/// until it ends (at 64 slots, 256 of them took peak RSS past 64 MiB).
pub const MAX_FINISHING: usize = 128;

/// A task's place in the run, handed to the measure function with its
/// entry.
#[derive(Debug)]
pub struct Slot {
    key: u64,
    tx: mpsc::UnboundedSender<u64>,
}

impl Slot {
    /// Gives the slot back before the task ends: the next URL may start
    /// while this one finishes in the background (still handed over only
    /// when it ends).
    pub fn release(self) {
        let _ = self.tx.send(self.key);
    }
}

/// URLs in flight when an adaptive run starts (or `parallel`, if lower).
pub const START_IN_FLIGHT: usize = 8;
/// URLs in flight an adaptive run never goes below (or `parallel`).
pub const MIN_IN_FLIGHT: usize = 2;

/// The number of URLs in flight: additive increase, multiplicative
/// decrease, between a floor and `parallel`.
#[derive(Clone, Debug)]
pub struct Aimd {
    limit: f64,
    floor: usize,
    ceiling: usize,
    slow_start: bool,
    /// Results still to come before another decrease counts (one per
    /// round: the URLs in flight at a decrease all saw the same overload).
    hold: usize,
}

impl Aimd {
    /// Starts at [`START_IN_FLIGHT`], at most `ceiling`.
    pub fn new(ceiling: usize) -> Aimd {
        let ceiling = ceiling.max(1);
        Aimd {
            limit: START_IN_FLIGHT.min(ceiling) as f64,
            floor: MIN_IN_FLIGHT.min(ceiling),
            ceiling,
            slow_start: true,
            hold: 0,
        }
    }

    /// A fixed limit of `ceiling` (no adaptation).
    pub fn fixed(ceiling: usize) -> Aimd {
        let ceiling = ceiling.max(1);
        Aimd {
            limit: ceiling as f64,
            floor: ceiling,
            ceiling,
            slow_start: false,
            hold: 0,
        }
    }

    /// URLs allowed in flight now.
    pub fn current(&self) -> usize {
        (self.limit as usize).clamp(self.floor, self.ceiling)
    }

    /// Takes one finished URL's verdict on the load.
    pub fn observe(&mut self, load: Load) {
        self.hold = self.hold.saturating_sub(1);
        match load {
            Load::Fine if self.slow_start => self.limit += 1.0,
            Load::Fine => self.limit += 1.0 / self.limit.max(1.0),
            Load::Overloaded if self.hold == 0 => {
                self.slow_start = false;
                self.limit = (self.limit / 2.0).max(self.floor as f64);
                self.hold = self.current();
            }
            Load::Overloaded => {}
        }
        self.limit = self.limit.clamp(self.floor as f64, self.ceiling as f64);
    }
}

/// Runs `measure` over `entries`, `parallel` at a time. `on_done` receives
/// each result; an error from it stops the run (the tasks still running
/// are aborted).
pub async fn run<T, F, Fut, E>(
    entries: impl Iterator<Item = Entry>,
    parallel: usize,
    per_host: usize,
    cancel: CancellationToken,
    measure: F,
    on_done: impl FnMut(T) -> Result<(), E>,
) -> Result<Ended, E>
where
    T: Send + 'static,
    F: Fn(Entry, CancellationToken) -> Fut,
    Fut: Future<Output = T> + Send + 'static,
{
    let limit = Aimd::fixed(parallel);
    run_adaptive(
        entries,
        limit,
        per_host,
        cancel,
        |e, c, _slot| measure(e, c),
        |_| Load::Fine,
        on_done,
    )
    .await
}

/// [`run`] with the URLs in flight set by `limit`, fed with what `load`
/// says of each result; each task may give its [`Slot`] back early.
pub async fn run_adaptive<T, F, Fut, E>(
    entries: impl Iterator<Item = Entry>,
    mut limit: Aimd,
    per_host: usize,
    cancel: CancellationToken,
    measure: F,
    load: impl Fn(&T) -> Load,
    mut on_done: impl FnMut(T) -> Result<(), E>,
) -> Result<Ended, E>
where
    T: Send + 'static,
    F: Fn(Entry, CancellationToken, Slot) -> Fut,
    Fut: Future<Output = T> + Send + 'static,
{
    let parallel = limit.ceiling;
    let max_finishing = (parallel * FINISHING_PER_SLOT).min(MAX_FINISHING);
    let (release_tx, mut release_rx) = mpsc::unbounded_channel::<u64>();
    let mut next_key = 0u64;
    // Keys of the tasks running, and of those that gave their slot back.
    let mut live: HashSet<u64> = HashSet::new();
    let mut released: HashSet<u64> = HashSet::new();
    let per_host = per_host.max(1);
    let lookahead = (parallel * 4).max(64);
    let mut entries = entries.fuse();
    let mut window: VecDeque<(String, Entry)> = VecDeque::new();
    let mut in_flight: HashMap<String, usize> = HashMap::new();
    let mut set: JoinSet<T> = JoinSet::new();
    let mut hosts: HashMap<tokio::task::Id, (String, u64)> = HashMap::new();
    let mut exhausted = false;

    loop {
        if !cancel.is_cancelled() {
            while !exhausted && window.len() < lookahead {
                match entries.next() {
                    Some(e) => window.push_back((host_of(&e.url), e)),
                    None => exhausted = true,
                }
            }
            while set.len() - released.len() < limit.current() && released.len() < max_finishing {
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
                let key = next_key;
                next_key += 1;
                let slot = Slot {
                    key,
                    tx: release_tx.clone(),
                };
                let handle = set.spawn(measure(entry, cancel.clone(), slot));
                live.insert(key);
                hosts.insert(handle.id(), (host, key));
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
            Some(key) = release_rx.recv() => {
                // A task that already ended has nothing to give back.
                if live.contains(&key) {
                    released.insert(key);
                }
                continue;
            }
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
        if let Some((host, key)) = hosts.remove(&id) {
            live.remove(&key);
            released.remove(&key);
            if let Some(n) = in_flight.get_mut(&host) {
                *n -= 1;
                if *n == 0 {
                    in_flight.remove(&host);
                }
            }
        }
        if let Some(out) = out {
            limit.observe(load(&out));
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

    #[test]
    fn aimd_grows_fast_until_overload_then_halves_once_per_round() {
        let mut a = Aimd::new(64);
        assert_eq!(a.current(), START_IN_FLIGHT);
        for _ in 0..8 {
            a.observe(Load::Fine);
        }
        assert_eq!(a.current(), 16, "slow start: one more per good result");
        a.observe(Load::Overloaded);
        assert_eq!(a.current(), 8);
        // The others in flight at the decrease saw the same overload.
        for _ in 0..7 {
            a.observe(Load::Overloaded);
        }
        assert_eq!(a.current(), 8);
        a.observe(Load::Overloaded);
        assert_eq!(a.current(), 4);
        // After slow start, one more per round of `current` good results.
        for _ in 0..4 {
            a.observe(Load::Fine);
        }
        assert_eq!(a.current(), 4, "{a:?}");
        a.observe(Load::Fine);
        assert_eq!(a.current(), 5, "{a:?}");
        for _ in 0..100 {
            a.observe(Load::Overloaded);
        }
        assert_eq!(a.current(), MIN_IN_FLIGHT);
        for _ in 0..100_000 {
            a.observe(Load::Fine);
        }
        assert_eq!(a.current(), 64, "never above the ceiling");
        assert_eq!(Aimd::new(3).current(), 3);
        let mut f = Aimd::fixed(16);
        f.observe(Load::Overloaded);
        assert_eq!(f.current(), 16);
    }

    #[tokio::test]
    async fn an_overloaded_run_has_fewer_urls_in_flight() {
        // Every result says "overloaded": after the first round the run
        // keeps MIN_IN_FLIGHT in flight, never the ceiling.
        let c = Arc::new(Counters::default());
        let c2 = c.clone();
        let mut n = 0;
        let peak_late = Arc::new(AtomicUsize::new(0));
        let p2 = peak_late.clone();
        let done = Arc::new(AtomicUsize::new(0));
        let d2 = done.clone();
        run_adaptive(
            entries(300, 300),
            Aimd::new(32),
            2,
            CancellationToken::new(),
            move |e, _, _| {
                let (c, p, d) = (c2.clone(), p2.clone(), d2.clone());
                async move {
                    let now = c.now.fetch_add(1, Ordering::SeqCst) + 1;
                    c.max.fetch_max(now, Ordering::SeqCst);
                    if d.load(Ordering::SeqCst) > 100 {
                        p.fetch_max(now, Ordering::SeqCst);
                    }
                    tokio::time::sleep(Duration::from_millis(1)).await;
                    c.now.fetch_sub(1, Ordering::SeqCst);
                    d.fetch_add(1, Ordering::SeqCst);
                    e.url
                }
            },
            |_| Load::Overloaded,
            |_u: String| -> Result<(), ()> {
                n += 1;
                Ok(())
            },
        )
        .await
        .unwrap();
        assert_eq!(n, 300);
        assert_eq!(c.max.load(Ordering::SeqCst), START_IN_FLIGHT);
        assert_eq!(peak_late.load(Ordering::SeqCst), MIN_IN_FLIGHT);
    }

    /// One slot; the first URL gives its slot back and then waits until the
    /// second URL has started: that happens only if the slot was freed.
    #[tokio::test]
    async fn a_released_slot_starts_the_next_url_before_the_task_ends() {
        let second_started = Arc::new(tokio::sync::Notify::new());
        let n2 = second_started.clone();
        let mut order = Vec::new();
        let run = run_adaptive(
            entries(2, 2),
            Aimd::fixed(1),
            1,
            CancellationToken::new(),
            move |e, _, slot| {
                let n = n2.clone();
                async move {
                    if e.url.ends_with("/0") {
                        slot.release();
                        n.notified().await;
                    } else {
                        n.notify_one();
                    }
                    e.url
                }
            },
            |_| Load::Fine,
            |u: String| -> Result<(), ()> {
                order.push(u);
                Ok(())
            },
        );
        // Only a guard against a hang if the slot were not freed; no
        // timing is asserted.
        let ended = tokio::time::timeout(Duration::from_secs(30), run)
            .await
            .expect("the second URL never started: the slot was not freed")
            .unwrap();
        assert_eq!(ended, Ended::Completed);
        // Handed over when each ended: the second first.
        assert_eq!(order, ["https://h1.example/1", "https://h0.example/0"]);
    }

    /// Every task gives its slot back at once and then stays a while (it
    /// lets the scheduler run many times over, on this one-thread runtime,
    /// before it ends): the tasks alive at once never exceed the finishing
    /// bound plus the slots.
    #[tokio::test]
    async fn finishing_tasks_are_bounded() {
        let c = Arc::new(Counters::default());
        let c2 = c.clone();
        let mut n = 0;
        let parallel = 2;
        let bound = parallel * FINISHING_PER_SLOT;
        run_adaptive(
            entries(100, 100),
            Aimd::fixed(parallel),
            2,
            CancellationToken::new(),
            move |e, _, slot| {
                let c = c2.clone();
                async move {
                    let now = c.now.fetch_add(1, Ordering::SeqCst) + 1;
                    c.max.fetch_max(now, Ordering::SeqCst);
                    slot.release();
                    for _ in 0..200 {
                        tokio::task::yield_now().await;
                    }
                    c.now.fetch_sub(1, Ordering::SeqCst);
                    e.url
                }
            },
            |_| Load::Fine,
            |_u: String| -> Result<(), ()> {
                n += 1;
                Ok(())
            },
        )
        .await
        .unwrap();
        assert_eq!(n, 100);
        let max = c.max.load(Ordering::SeqCst);
        assert!((bound..=bound + parallel).contains(&max), "{max} at once");
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
