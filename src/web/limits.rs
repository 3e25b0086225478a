//! Connections per destination host, across every URL of a run.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, Weak};

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// At most `per_host` open connections to one host name at a time. Clone it
/// to share; entries of hosts no longer in use are dropped, so memory stays
/// bounded whatever the list size.
#[derive(Clone, Debug)]
pub struct HostLimiter {
    per_host: usize,
    hosts: Arc<Mutex<HashMap<String, Weak<Semaphore>>>>,
}

impl HostLimiter {
    /// A limiter allowing `per_host` connections per host (at least 1).
    pub fn new(per_host: usize) -> HostLimiter {
        HostLimiter {
            per_host: per_host.max(1),
            hosts: Arc::new(Mutex::new(HashMap::new())),
        }
    }

    /// The connections allowed per host.
    pub fn per_host(&self) -> usize {
        self.per_host
    }

    /// Waits for a connection slot to `host` (case-insensitive); the slot is
    /// free again when the permit is dropped.
    pub async fn acquire(&self, host: &str) -> OwnedSemaphorePermit {
        let sem = self.semaphore(&host.to_ascii_lowercase());
        loop {
            // The semaphore is never closed, so this only loops in theory.
            if let Ok(p) = Arc::clone(&sem).acquire_owned().await {
                return p;
            }
        }
    }

    fn semaphore(&self, host: &str) -> Arc<Semaphore> {
        let mut map = self.hosts.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(s) = map.get(host).and_then(Weak::upgrade) {
            return s;
        }
        if map.len() >= 64 {
            map.retain(|_, w| w.strong_count() > 0);
        }
        let s = Arc::new(Semaphore::new(self.per_host));
        map.insert(host.to_string(), Arc::downgrade(&s));
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn limits_per_host_and_forgets_idle_hosts() {
        let l = HostLimiter::new(2);
        let a1 = l.acquire("A.example").await;
        let _a2 = l.acquire("a.example").await;
        // A third slot for a.example is not available, another host's is.
        let third =
            tokio::time::timeout(std::time::Duration::from_millis(20), l.acquire("a.example"));
        assert!(third.await.is_err());
        let _b = l.acquire("b.example").await;
        drop(a1);
        let _a3 = l.acquire("a.example").await;
        drop((_a2, _a3, _b));
        for i in 0..100 {
            drop(l.acquire(&format!("h{i}.example")).await);
        }
        assert!(l.hosts.lock().unwrap().len() <= 65);
    }
}
