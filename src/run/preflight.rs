//! Before measuring: is there a network, and is there a control?
//!
//! In parallel and within [`PREFLIGHT_TIMEOUT`], the run asks each resolver
//! it will use (the system resolver and every `--resolver`) for the first
//! few host names of its own inputs and their top-level domains, fetches
//! `GET /` from each control, and asks the STUN server when one is used.
//! Nothing is contacted that the run would not contact anyway, and the
//! names are ones it is about to measure (or their TLDs). A resolver counts as working when it answers at all (an
//! NXDOMAIN is an answer: the URL may be blocked, the network is up).
//!
//! - Every check that ran failed (and at least one resolver was asked):
//!   [`Network::Dead`]; the run stops with [`super::EXIT_NO_NETWORK`].
//! - The resolvers work but no control answers: [`Network::NoControl`]; the
//!   run warns ("most verdicts will be inconclusive") at the start and in
//!   the summary, and stops when the config says `on_no_control = "stop"`.
//!
//! Our own control (`gatewatch control serve`) answers the health check
//! with the address it sees (`x_client_addr`), so the public address is
//! known, and scrubbed, before the first page is fetched — even if the
//! control later answers 429.

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use serde::Serialize;

use super::strings::{net_words, Lang, NetWords};
use crate::control::client::ControlClient;
use probes::dns::{DnsOptions, QueryType};
use probes::records::Trace;

/// The whole preflight is over within this.
pub const PREFLIGHT_TIMEOUT: Duration = Duration::from_secs(4);
/// Host names from the inputs each resolver is asked about.
pub const HOSTS_CHECKED: usize = 3;

/// One check: what was asked and whether it answered.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Check {
    /// `system`, `udp://IP:PORT`, a control URL, or `stun://HOST:PORT`.
    pub target: String,
    /// It answered.
    pub reachable: bool,
    /// Why not (an OONI failure string or an error), when it did not.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub failure: Option<String>,
}

/// What the preflight found.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct Preflight {
    /// Each resolver (empty when no input had a host name to ask about).
    pub resolvers: Vec<Check>,
    /// Each control (empty with `--control none`).
    pub controls: Vec<Check>,
    /// The STUN server, when one is used.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub stun: Option<Check>,
    /// The public address learnt (never serialised: it is only scrubbed).
    #[serde(skip)]
    pub public_addrs: Vec<IpAddr>,
}

/// The state of the network before measuring.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Network {
    /// Something answered, and a control (when one is used) did.
    Up,
    /// The network answers but no control does.
    NoControl,
    /// Nothing answered.
    Dead,
}

impl Preflight {
    /// The verdict on the network.
    pub fn network(&self) -> Network {
        let any_ok = self
            .resolvers
            .iter()
            .chain(&self.controls)
            .chain(&self.stun)
            .any(|c| c.reachable);
        if !self.resolvers.is_empty() && !any_ok {
            return Network::Dead;
        }
        if !self.controls.is_empty() && !self.controls.iter().any(|c| c.reachable) {
            return Network::NoControl;
        }
        Network::Up
    }
}

/// Whether the run goes on after the preflight.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Go {
    /// Measure.
    On,
    /// Stop: nothing is measured (exit code 69).
    Stop,
}

/// Says on stderr what the preflight found when something is wrong, and
/// whether the run goes on: not without a network, nor without a control
/// when the config says `on_no_control = "stop"`.
pub fn announce(pre: &Preflight, lang: Lang, stop_without_control: bool) -> Go {
    let details = |checks: &mut dyn Iterator<Item = &Check>| {
        for c in checks {
            eprintln!(
                "  {}: {}",
                c.target,
                c.failure.as_deref().unwrap_or("no answer")
            );
        }
    };
    match pre.network() {
        Network::Dead => {
            eprintln!("gatewatch: {}", net_words(lang, NetWords::NoNetwork));
            details(&mut pre.resolvers.iter().chain(&pre.controls).chain(&pre.stun));
            Go::Stop
        }
        Network::NoControl => {
            eprintln!(
                "gatewatch: warning: {}",
                net_words(lang, NetWords::NoControl)
            );
            details(&mut pre.controls.iter());
            if stop_without_control {
                eprintln!(
                    "gatewatch: {}",
                    net_words(lang, NetWords::StoppingWithoutControl)
                );
                Go::Stop
            } else {
                Go::On
            }
        }
        Network::Up => Go::On,
    }
}

/// What the preflight needs to know.
#[derive(Debug, Default)]
pub struct Targets<'a> {
    /// Host names to ask the resolvers about (the first inputs').
    pub hosts: Vec<String>,
    /// Ask the system resolver.
    pub system_resolver: bool,
    /// UDP resolvers.
    pub resolvers: Vec<SocketAddr>,
    /// The control client.
    pub control: Option<&'a ControlClient>,
    /// The STUN server (`host:port`).
    pub stun: Option<String>,
}

/// The first `n` distinct host names (not addresses) of `urls`, then their
/// top-level domains: a censor that drops the queries for some names does
/// not drop those for a TLD, so a resolver that works is seen to work.
pub fn hosts_of<I: IntoIterator<Item = String>>(urls: I, n: usize) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for u in urls {
        if out.len() >= n {
            break;
        }
        let Ok(p) = url::Url::parse(&u) else { continue };
        if let Some(url::Host::Domain(d)) = p.host() {
            if !out.iter().any(|h| h == d) {
                out.push(d.to_string());
            }
        }
    }
    let tlds: Vec<String> = out
        .iter()
        .filter_map(|h| h.trim_end_matches('.').rsplit('.').next())
        .filter(|t| !t.is_empty())
        .map(str::to_string)
        .collect();
    for t in tlds {
        if !out.contains(&t) {
            out.push(t);
        }
    }
    out
}

/// Runs every check at once.
pub async fn check(t: Targets<'_>) -> Preflight {
    let timeout = PREFLIGHT_TIMEOUT - Duration::from_millis(500);
    let dns = async {
        if t.hosts.is_empty() {
            return Vec::new();
        }
        let mut which: Vec<Option<SocketAddr>> = Vec::new();
        if t.system_resolver {
            which.push(None);
        }
        which.extend(t.resolvers.iter().copied().map(Some));
        let hosts = t.hosts.clone();
        join_all(
            which
                .into_iter()
                .map(|r| resolver_check(r, hosts.clone(), timeout)),
        )
        .await
    };
    let controls = async {
        match t.control {
            Some(c) => {
                let http = c.http().clone();
                join_all(
                    c.urls()
                        .iter()
                        .map(|u| control_check(http.clone(), u.clone(), timeout)),
                )
                .await
            }
            None => Vec::new(),
        }
    };
    let stun = async {
        match &t.stun {
            Some(s) => {
                let ip = super::publicip::stun_lookup(s, timeout).await;
                Some((
                    Check {
                        target: format!("stun://{s}"),
                        reachable: ip.is_some(),
                        failure: ip.is_none().then(|| "no STUN answer".to_string()),
                    },
                    ip,
                ))
            }
            None => None,
        }
    };
    let (resolvers, controls, stun) = tokio::join!(dns, controls, stun);
    let mut public_addrs = Vec::new();
    let controls = controls
        .into_iter()
        .map(|(c, ip)| {
            public_addrs.extend(ip);
            c
        })
        .collect();
    let stun = stun.map(|(c, ip)| {
        public_addrs.extend(ip);
        c
    });
    Preflight {
        resolvers,
        controls,
        stun,
        public_addrs,
    }
}

/// True when a DNS failure still means the resolver answered.
fn answered(failure: Option<&str>) -> bool {
    matches!(
        failure,
        None | Some(
            "dns_nxdomain_error"
                | "dns_no_answer"
                | "dns_servfail_error"
                | "dns_refused_error"
                | "dns_non_recoverable_failure"
        )
    )
}

/// Runs the futures at once (each its own task); results in their order.
async fn join_all<F, T>(jobs: impl IntoIterator<Item = F>) -> Vec<T>
where
    F: std::future::Future<Output = T> + Send + 'static,
    T: Send + 'static,
{
    let handles: Vec<_> = jobs.into_iter().map(tokio::spawn).collect();
    let mut out = Vec::with_capacity(handles.len());
    for h in handles {
        if let Ok(v) = h.await {
            out.push(v);
        }
    }
    out
}

async fn resolver_check(r: Option<SocketAddr>, hosts: Vec<String>, timeout: Duration) -> Check {
    let target = match r {
        Some(a) => format!("udp://{a}"),
        None => "system".to_string(),
    };
    let jobs = hosts.into_iter().map(|h| {
        let trace = Trace::new();
        async move {
            let trace = &trace;
            let h = h.as_str();
            let q = match r {
                Some(addr) => {
                    let opts = DnsOptions {
                        timeout,
                        listen_after_first: Duration::ZERO,
                    };
                    probes::dns::udp::query(trace, addr, h, QueryType::A, &opts).await
                }
                None => probes::dns::system::lookup(trace, h, timeout).await,
            };
            q.failure.map(|f| f.to_string())
        }
    });
    let results = join_all(jobs).await;
    let ok = results.iter().any(|f| answered(f.as_deref()));
    Check {
        target,
        reachable: ok,
        failure: if ok {
            None
        } else {
            results.into_iter().flatten().next()
        },
    }
}

/// `GET /` of one control: any HTTP answer means it is reachable. Our own
/// control's health answer carries the address it sees.
async fn control_check(
    http: reqwest::Client,
    url: String,
    timeout: Duration,
) -> (Check, Option<IpAddr>) {
    let resp = http.get(&url).timeout(timeout).send().await;
    match resp {
        Ok(r) => {
            let body: Option<serde_json::Value> = r.json().await.ok();
            let ip = body
                .as_ref()
                .and_then(|b| b.get("x_client_addr"))
                .and_then(|v| v.as_str())
                .and_then(super::scrub::parse_addr);
            (
                Check {
                    target: url.clone(),
                    reachable: true,
                    failure: None,
                },
                ip,
            )
        }
        Err(e) => (
            Check {
                target: url,
                reachable: false,
                failure: Some(short_error(&e)),
            },
            None,
        ),
    }
}

/// The innermost cause of a request error, on one line.
fn short_error(e: &(dyn std::error::Error + 'static)) -> String {
    let mut cur: &(dyn std::error::Error + 'static) = e;
    while let Some(next) = cur.source() {
        cur = next;
    }
    let inner = cur.to_string();
    let outer = e.to_string();
    if inner == outer {
        outer
    } else {
        format!("{outer}: {inner}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn c(ok: bool) -> Check {
        Check {
            target: "x".into(),
            reachable: ok,
            failure: None,
        }
    }

    #[test]
    fn network_states() {
        let mut p = Preflight {
            resolvers: vec![c(false)],
            controls: vec![c(false), c(false)],
            stun: Some(c(false)),
            ..Default::default()
        };
        assert_eq!(p.network(), Network::Dead);
        p.stun = Some(c(true));
        assert_eq!(p.network(), Network::NoControl);
        p.controls[1] = c(true);
        assert_eq!(p.network(), Network::Up);
        // Nothing to ask the resolvers about and no control: nothing known.
        assert_eq!(Preflight::default().network(), Network::Up);
        // Only a dead control, no host names: not a dead network.
        let p = Preflight {
            controls: vec![c(false)],
            ..Default::default()
        };
        assert_eq!(p.network(), Network::NoControl);
    }

    #[test]
    fn host_names_only() {
        let urls = [
            "http://127.0.0.1:8080/",
            "https://a.example/x",
            "https://a.example/y",
            "https://[2001:db8::1]/",
            "https://b.example/",
            "https://c.example/",
            "https://d.example/",
        ]
        .map(String::from);
        assert_eq!(
            hosts_of(urls, 3),
            vec!["a.example", "b.example", "c.example", "example"]
        );
    }
}
