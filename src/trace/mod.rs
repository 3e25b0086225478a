//! `gatewatch trace URL`: injection forensics and censor localisation.
//!
//! Every trigger of a URL is replayed with IP TTL 1, 2, ... (CenTrace,
//! OONI's tlsmiddlebox): a DNS query for the name (to the resolver, and to
//! the site's own address, which runs no resolver), a TCP SYN, and a TLS
//! ClientHello with the SNI or an HTTP GET with the Host sent on a
//! connection opened at the normal TTL, each for the test name and for a
//! control name sent to the same address. ICMP time exceeded names each
//! hop; the first TTL at which the test name is treated differently from the
//! control is where the censor sits. [`trace_url`] is what `run
//! --trace-blocked` calls; its [`TraceReport`] goes into `test_keys.x_trace`.

pub mod analyse;
pub mod forensics;
pub mod probe;
pub mod report;
pub mod trigger;

use std::net::{IpAddr, Ipv4Addr, SocketAddr, SocketAddrV4};
use std::sync::Arc;
use std::time::{Duration, Instant};

use probes::raw::sniff::Sniffer;
use probes::raw::Capabilities;

pub use report::{render_table, TraceReport};
use report::{HopProbe, Outcome, Role, Series, Trigger};

use probe::ProbeContext;

/// Errors of this command (program errors; measurement failures are in
/// the report).
#[derive(Debug, thiserror::Error)]
pub enum TraceError {
    /// The URL could not be parsed or has no host.
    #[error("bad URL {url:?}: {reason}")]
    BadUrl {
        /// The argument.
        url: String,
        /// What was wrong.
        reason: String,
    },
    /// The report could not be written as JSON.
    #[error("cannot serialise the report: {0}")]
    Json(#[from] serde_json::Error),
}

/// Arguments of `gatewatch trace`.
#[derive(Debug, clap::Args)]
pub struct TraceArgs {
    /// The URL whose triggers to replay (http:// or https://).
    pub url: String,
    /// The highest IP TTL to try.
    #[arg(long, default_value_t = 30, value_parser = clap::value_parser!(u8).range(1..=64))]
    pub max_ttl: u8,
    /// Wait between probes (stateful middleboxes need a pause).
    #[arg(long, default_value = "200ms", value_parser = humantime::parse_duration)]
    pub pace: Duration,
    /// How long to wait for a reaction to one probe.
    #[arg(long, default_value = "2s", value_parser = humantime::parse_duration)]
    pub probe_timeout: Duration,
    /// Upper bound for the whole trace.
    #[arg(long, default_value = "180s", value_parser = humantime::parse_duration)]
    pub max_time: Duration,
    /// The name sent to the same address as a control.
    #[arg(long, default_value = "example.org")]
    pub control_name: String,
    /// The resolver for the DNS triggers [default: the first IPv4
    /// nameserver of /etc/resolv.conf].
    #[arg(long, value_name = "ADDR")]
    pub resolver: Option<SocketAddr>,
    /// The site's address, IPv4 or IPv6 [default: resolved (A) through
    /// the resolver].
    #[arg(long, value_name = "ADDR")]
    pub address: Option<IpAddr>,
    /// Do not use raw sockets even when permitted.
    #[arg(long)]
    pub no_raw: bool,
    /// Print the report as JSON instead of a table.
    #[arg(long)]
    pub json: bool,
}

/// How a trace runs.
#[derive(Clone, Debug)]
pub struct TraceSettings {
    /// The highest IP TTL to try.
    pub max_ttl: u8,
    /// Wait between probes of one series.
    pub pace: Duration,
    /// The longest wait for a reaction to one probe.
    pub probe_timeout: Duration,
    /// Keep listening this long after the first reaction.
    pub listen_after: Duration,
    /// Upper bound for the whole trace.
    pub max_time: Duration,
    /// The control name.
    pub control_name: String,
    /// The resolver for the DNS triggers; `None` reads /etc/resolv.conf.
    pub resolver: Option<SocketAddr>,
    /// The site's address (IPv4 or IPv6); `None` resolves the host.
    pub address: Option<IpAddr>,
    /// Use the raw sniffer when CAP_NET_RAW allows.
    pub use_raw: bool,
    /// Stop a series after this many silent TTLs in a row.
    pub max_silent: u8,
}

impl Default for TraceSettings {
    fn default() -> Self {
        TraceSettings {
            max_ttl: 30,
            pace: Duration::from_millis(200),
            probe_timeout: Duration::from_secs(2),
            listen_after: Duration::from_millis(400),
            max_time: Duration::from_secs(180),
            control_name: "example.org".to_string(),
            resolver: None,
            address: None,
            use_raw: true,
            max_silent: 5,
        }
    }
}

/// Runs the command; returns the process exit code (0 traced, 1 the trace
/// could not run).
pub async fn execute(args: TraceArgs) -> Result<u8, TraceError> {
    let url = url::Url::parse(&args.url).map_err(|e| TraceError::BadUrl {
        url: args.url.clone(),
        reason: e.to_string(),
    })?;
    if url.host_str().is_none() {
        return Err(TraceError::BadUrl {
            url: args.url,
            reason: "no host".to_string(),
        });
    }
    let settings = TraceSettings {
        max_ttl: args.max_ttl,
        pace: args.pace,
        probe_timeout: args.probe_timeout,
        max_time: args.max_time,
        control_name: args.control_name,
        resolver: args.resolver,
        address: args.address,
        use_raw: !args.no_raw,
        ..TraceSettings::default()
    };
    let report = trace_url(&url, &settings).await;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print!("{}", render_table(&report));
    }
    Ok(if report.failure.is_some() { 1 } else { 0 })
}

/// Traces one URL. Never fails: what could not be done is in the report's
/// `failure`, `skipped` and `interrupted`.
pub async fn trace_url(url: &url::Url, settings: &TraceSettings) -> TraceReport {
    let start = Instant::now();
    let deadline = start + settings.max_time;
    let host = url
        .host_str()
        .unwrap_or_default()
        .trim_matches(['[', ']'])
        .to_string();
    let https = url.scheme() == "https";
    let mut report = TraceReport {
        input: url.to_string(),
        host: host.clone(),
        port: url.port_or_known_default().unwrap_or(80),
        control_name: settings.control_name.clone(),
        ..TraceReport::default()
    };

    let caps = if settings.use_raw {
        tokio::task::spawn_blocking(Capabilities::detect)
            .await
            .unwrap_or(Capabilities {
                raw: false,
                reason: Some("capability check failed".to_string()),
            })
    } else {
        Capabilities {
            raw: false,
            reason: Some("disabled (--no-raw)".to_string()),
        }
    };
    let sniffer = match caps.raw {
        true => match Sniffer::start(true) {
            Ok(s) => Some(Arc::new(s)),
            Err(e) => {
                report.skipped.push(format!("raw_sniffer: {e}"));
                None
            }
        },
        false => None,
    };
    report.raw_capability = sniffer.is_some();
    if sniffer.is_none() {
        let why = caps.skip_reason().unwrap_or("sniffer_failed").to_string();
        for what in ["rst_ip_ttl", "rst_ip_id", "packets_after_rst"] {
            report.skipped.push(format!("{what}: {why}"));
        }
    }
    let ctx = ProbeContext {
        timeout: settings.probe_timeout,
        listen_after: settings.listen_after,
        sniffer,
        start,
    };

    let resolver = settings.resolver.or_else(system_resolver);
    report.resolver = resolver.map(|r| r.to_string());
    let resolver_v4 = match resolver {
        Some(SocketAddr::V4(r)) => Some(r),
        Some(SocketAddr::V6(_)) => {
            report
                .skipped
                .push("dns: IPv6 resolver not supported by trace".to_string());
            None
        }
        None => {
            report
                .skipped
                .push("dns: no resolver configured".to_string());
            None
        }
    };

    let address = match (settings.address, host.parse::<IpAddr>()) {
        (Some(a), _) => Some(a),
        (None, Ok(a)) => Some(a),
        (None, Err(_)) => match resolver_v4 {
            Some(r) => resolve(&ctx, r, &host).await.map(IpAddr::V4),
            None => None,
        },
    };
    let Some(address) = address else {
        report.failure = Some("no IPv4 address for the host (give --address)".to_string());
        report.runtime = start.elapsed().as_secs_f64();
        return report;
    };
    report.address = Some(address.to_string());
    let site = SocketAddr::new(address, report.port);
    // The DNS probes are IPv4 only: no DNS series at an IPv6 site.
    let dns_at_site = match address {
        IpAddr::V4(a) => Some(SocketAddrV4::new(a, 53)),
        IpAddr::V6(_) => None,
    };
    let is_name = host.parse::<IpAddr>().is_err();
    let runner = Runner {
        ctx,
        settings: settings.clone(),
        deadline,
    };

    // The SYN series first: it tells how far away the site is.
    let syn = runner.syn_series(site).await;
    let server_hop = syn
        .probes
        .iter()
        .find(|p| p.outcome == Outcome::Response)
        .map(|p| p.ttl);
    report.server_hop = server_hop;
    let site_limit = server_hop
        .map(|h| h.saturating_add(2).min(settings.max_ttl))
        .unwrap_or(settings.max_ttl);

    let (trigger, payload_test, payload_control) = if https {
        // A ClientHello that cannot be built (a name rustls refuses) is a
        // skipped series, said so in the report.
        let mut hello = |name: &str| {
            trigger::client_hello(name)
                .map_err(|e| report.skipped.push(format!("stream: {e}")))
                .ok()
        };
        (
            Trigger::TlsClientHello,
            hello(&host),
            hello(&settings.control_name),
        )
    } else {
        let path = match url.query() {
            Some(q) => format!("{}?{q}", url.path()),
            None => url.path().to_string(),
        };
        (
            Trigger::HttpGet,
            Some(trigger::http_get(&host, &path)),
            Some(trigger::http_get(&settings.control_name, &path)),
        )
    };
    let stream_pair = async {
        match (payload_test, payload_control) {
            (Some(t), Some(c)) => {
                runner
                    .stream_pair(site, trigger, &host, t, c, site_limit)
                    .await
            }
            _ => Vec::new(),
        }
    };
    let dns_resolver = async {
        match (resolver_v4, is_name) {
            (Some(r), true) => {
                runner
                    .dns_pair(r, Trigger::Dns, &host, settings.max_ttl)
                    .await
            }
            _ => Vec::new(),
        }
    };
    let dns_site = async {
        match (dns_at_site, is_name) {
            (Some(at), true) => {
                runner
                    .dns_pair(at, Trigger::DnsNonResolver, &host, site_limit)
                    .await
            }
            _ => Vec::new(),
        }
    };
    let (streams, dns_r, dns_s) = tokio::join!(stream_pair, dns_resolver, dns_site);
    if !is_name {
        report
            .skipped
            .push("dns: the URL's host is an address".to_string());
    } else if dns_at_site.is_none() {
        report
            .skipped
            .push("dns: no DNS series to an IPv6 site (IPv4 only)".to_string());
    }

    report.series.push(syn);
    report.series.extend(streams);
    report.series.extend(dns_r);
    report.series.extend(dns_s);
    if Instant::now() >= deadline {
        report.interrupted = Some(format!(
            "max_time {} reached; later TTLs not probed",
            humantime::format_duration(settings.max_time)
        ));
    }
    report.hops = analyse::hop_map(&report.series, settings.max_ttl);
    // From its hop count on, the site itself answers.
    if let Some(server) = server_hop {
        for h in report.hops.iter_mut().filter(|h| h.ttl >= server) {
            h.address.get_or_insert_with(|| address.to_string());
        }
    }
    let raw = report.raw_capability;
    let mut findings = Vec::new();
    for (t, c) in analyse::pairs(&report.series) {
        if let Some(mut f) = analyse::compare(t, c, server_hop, raw) {
            analyse::place(&mut f, &report.hops, c);
            findings.push(f);
        }
    }
    report.findings = findings;
    report.non_resolver_dns = report
        .series
        .iter()
        .filter(|s| s.trigger == Trigger::DnsNonResolver)
        .map(analyse::non_resolver_check)
        .collect();
    report.runtime = start.elapsed().as_secs_f64();
    report
}

/// Runs series of probes, paced and within the deadline.
struct Runner {
    ctx: ProbeContext,
    settings: TraceSettings,
    deadline: Instant,
}

impl Runner {
    async fn syn_series(&self, site: SocketAddr) -> Series {
        let mut s = Series {
            trigger: Trigger::TcpSyn,
            role: Role::Test,
            name: None,
            destination: site.to_string(),
            probes: Vec::new(),
        };
        let mut rst_run = 0;
        let mut silent = 0;
        for ttl in 1..=self.settings.max_ttl {
            if !self.time_left() {
                break;
            }
            let ctx = self.ctx.clone();
            let p = blocking(move || probe::tcp_syn(&ctx, site, ttl)).await;
            let done = p.outcome == Outcome::Response;
            rst_run = if p.rst { rst_run + 1 } else { 0 };
            silent = if p.outcome == Outcome::Silence {
                silent + 1
            } else {
                0
            };
            s.probes.push(p);
            if done || rst_run >= 3 || silent >= self.settings.max_silent {
                break;
            }
            tokio::time::sleep(self.settings.pace).await;
        }
        s
    }

    /// The stream trigger for the test name and the control name,
    /// interleaved per TTL.
    async fn stream_pair(
        &self,
        site: SocketAddr,
        trigger: Trigger,
        host: &str,
        test: Vec<u8>,
        control: Vec<u8>,
        limit: u8,
    ) -> Vec<Series> {
        let mut t = series(trigger, Role::Test, host, site);
        let mut c = series(trigger, Role::Control, &self.settings.control_name, site);
        let (test, control) = (Arc::new(test), Arc::new(control));
        let mut reached = 0;
        let mut silent = 0;
        let mut no_conn = 0;
        for ttl in 1..=limit {
            if !self.time_left() {
                break;
            }
            let ctx = self.ctx.clone();
            let bytes = Arc::clone(&control);
            let pc = blocking(move || probe::stream_trigger(&ctx, site, ttl, &bytes)).await;
            tokio::time::sleep(self.settings.pace).await;
            let ctx = self.ctx.clone();
            let bytes = Arc::clone(&test);
            let pt = blocking(move || probe::stream_trigger(&ctx, site, ttl, &bytes)).await;
            reached = if pc.outcome == Outcome::Response {
                reached + 1
            } else {
                0
            };
            let both_silent = pc.outcome == Outcome::Silence && pt.outcome == Outcome::Silence;
            silent = if both_silent { silent + 1 } else { 0 };
            no_conn =
                if pt.outcome == Outcome::ConnectFailed && pc.outcome == Outcome::ConnectFailed {
                    no_conn + 1
                } else {
                    0
                };
            c.probes.push(pc);
            t.probes.push(pt);
            if reached >= 2 || silent >= self.settings.max_silent || no_conn >= 2 {
                break;
            }
            tokio::time::sleep(self.settings.pace).await;
        }
        vec![t, c]
    }

    /// DNS queries for the test and control names to `dst`, per TTL.
    async fn dns_pair(
        &self,
        dst: SocketAddrV4,
        trigger: Trigger,
        host: &str,
        limit: u8,
    ) -> Vec<Series> {
        let mut t = series(trigger, Role::Test, host, dst);
        let mut c = series(trigger, Role::Control, &self.settings.control_name, dst);
        let mut reached = 0;
        let mut silent = 0;
        for ttl in 1..=limit {
            if !self.time_left() {
                break;
            }
            let ctx = self.ctx.clone();
            let name = self.settings.control_name.clone();
            let pc = blocking(move || probe::dns(&ctx, dst, ttl, &name)).await;
            tokio::time::sleep(self.settings.pace).await;
            let ctx = self.ctx.clone();
            let name = host.to_string();
            let pt = blocking(move || probe::dns(&ctx, dst, ttl, &name)).await;
            let arrived = matches!(pc.outcome, Outcome::DnsAnswer | Outcome::Unreachable);
            reached = if arrived { reached + 1 } else { 0 };
            let both_silent = pc.outcome == Outcome::Silence && pt.outcome == Outcome::Silence;
            silent = if both_silent { silent + 1 } else { 0 };
            c.probes.push(pc);
            t.probes.push(pt);
            if reached >= 2 || silent >= self.settings.max_silent {
                break;
            }
            tokio::time::sleep(self.settings.pace).await;
        }
        vec![t, c]
    }

    fn time_left(&self) -> bool {
        Instant::now() < self.deadline
    }
}

fn series(trigger: Trigger, role: Role, name: &str, dst: impl Into<SocketAddr>) -> Series {
    Series {
        trigger,
        role,
        name: Some(name.to_string()),
        destination: dst.into().to_string(),
        probes: Vec::new(),
    }
}

async fn blocking<F>(f: F) -> HopProbe
where
    F: FnOnce() -> HopProbe + Send + 'static,
{
    tokio::task::spawn_blocking(f)
        .await
        .unwrap_or_else(|e| HopProbe {
            outcome: Outcome::Error,
            failure: Some(format!("unknown_failure: probe task: {e}")),
            ..HopProbe::default()
        })
}

/// The site's address through `resolver`, at the normal TTL. With several
/// replies (an injector racing the resolver) the last one is taken: an
/// on-path injector answers first.
async fn resolve(ctx: &ProbeContext, resolver: SocketAddrV4, host: &str) -> Option<Ipv4Addr> {
    let ctx = ctx.clone();
    let host = host.to_string();
    let p = blocking(move || probe::dns(&ctx, resolver, 64, &host)).await;
    p.dns_replies
        .iter()
        .rev()
        .find_map(|r| r.addresses.first())
        .and_then(|a| a.parse().ok())
}

/// The first IPv4 `nameserver` of /etc/resolv.conf, port 53.
fn system_resolver() -> Option<SocketAddr> {
    let text = std::fs::read_to_string("/etc/resolv.conf").ok()?;
    text.lines()
        .filter_map(|l| l.trim().strip_prefix("nameserver"))
        .filter_map(|rest| rest.trim().parse::<Ipv4Addr>().ok())
        .map(|a| SocketAddr::from((a, 53)))
        .next()
}
