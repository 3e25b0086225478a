//! Tests: verdicts. A QA table in the style of OONI's catalogue: one row per
//! situation (every mechanism, every not-censorship trap), each asserting the
//! classic keys and `x_verdict` status, layer and mechanism. The rows are
//! built with small builders on constructed measurements; the `pipeline`
//! rows at the end run the real web measurement against loopback fakes.

use std::collections::BTreeMap;

use gatewatch::analysis::{analyze, AnalysisContext, Fingerprints};
use gatewatch::control::protocol::{
    ControlBody, ControlHop, ControlHttp, ControlIpInfo, ControlResponse, ControlTcp, ControlTls,
};
use gatewatch::model::{Blocking, InjectionEvidence, Measurement, VerdictStatus};
use probes::failure::Failure;
use probes::records::{
    CertSummary, DnsAnswer, DnsQuery, DnsReply, HttpRequestRecord, HttpResponseRecord,
    HttpTransaction, MaybeBinary, TcpConnect, TcpStatus, TlsHandshake, TransferStats,
};

// ------------------------------------------------------------ builders ----

const SITE: &str = "203.0.113.7";
const HOST: &str = "news.example";

/// A measurement under construction.
struct M {
    m: Measurement,
    /// Requests in time order (reversed when built).
    reqs: Vec<HttpTransaction>,
    ctx: AnalysisContext,
}

fn url(u: &str) -> M {
    let mut ctx = AnalysisContext {
        probe_cc: "KH".into(),
        ..AnalysisContext::default()
    };
    ctx.treat_as_public = vec![
        "198.51.100.0/24".parse().unwrap(),
        "203.0.113.0/24".parse().unwrap(),
    ];
    M {
        m: Measurement {
            input: Some(u.to_string()),
            probe_cc: "KH".into(),
            ..Measurement::default()
        },
        reqs: Vec::new(),
        ctx,
    }
}

fn answers(addrs: &[&str]) -> Vec<DnsAnswer> {
    addrs
        .iter()
        .map(|a| {
            let v4 = !a.contains(':');
            DnsAnswer {
                answer_type: if v4 { "A" } else { "AAAA" }.into(),
                ipv4: v4.then(|| a.to_string()),
                ipv6: (!v4).then(|| a.to_string()),
                ..DnsAnswer::default()
            }
        })
        .collect()
}

fn fail(s: &str) -> Option<Failure> {
    Some(Failure::parse(s))
}

fn ok_or(f: &str) -> Option<Failure> {
    if f.is_empty() {
        None
    } else {
        fail(f)
    }
}

impl M {
    fn query(mut self, engine: &str, resolver: &str, host: &str, addrs: &[&str], f: &str) -> M {
        self.m.test_keys.queries.push(DnsQuery {
            answers: answers(addrs),
            engine: engine.into(),
            failure: ok_or(f),
            hostname: host.into(),
            query_type: if engine == "getaddrinfo" { "ANY" } else { "A" }.into(),
            resolver_address: resolver.into(),
            tags: vec!["depth=0".into()],
            ..DnsQuery::default()
        });
        self
    }
    /// The run's line baseline (bytes/s) when this URL is judged.
    fn line(mut self, bps: f64) -> M {
        self.ctx.line_rate_bps = Some(bps);
        self
    }
    /// The run's share of retried steps when this URL is judged.
    fn line_loss(mut self, share: f64) -> M {
        self.ctx.line_loss = Some(share);
        self
    }
    /// The system resolver answers `addrs` for HOST.
    fn sys(self, addrs: &[&str]) -> M {
        self.query("getaddrinfo", "", HOST, addrs, "")
    }
    /// The system resolver fails for HOST.
    fn sys_fail(mut self, f: &str) -> M {
        self.m.test_keys.dns_experiment_failure = Some(f.into());
        self.query("getaddrinfo", "", HOST, &[], f)
    }
    /// A UDP resolver answers.
    fn udp(self, resolver: &str, addrs: &[&str]) -> M {
        self.query("udp", resolver, HOST, addrs, "")
    }
    /// A UDP resolver got two racing replies; the first (used) one is
    /// `first`.
    fn udp_racing(mut self, resolver: &str, first: &[&str], second: &[&str]) -> M {
        let reply = |a: &[&str]| DnsReply {
            source: resolver.into(),
            answers: answers(a),
            ..DnsReply::default()
        };
        self = self.udp(resolver, first);
        let q = self.m.test_keys.queries.last_mut().unwrap();
        q.x_replies = vec![reply(first), reply(second)];
        self.m.test_keys.x_injection.push(InjectionEvidence {
            kind: "dns.duplicate_replies".into(),
            target: format!("{HOST} A @{resolver}"),
            detail: "2 replies with 2 different answers".into(),
        });
        self
    }
    fn tcp(self, ep: &str, f: &str) -> M {
        self.tcp_timed(ep, f, 0.05)
    }
    fn tcp_timed(mut self, ep: &str, f: &str, secs: f64) -> M {
        let sa: std::net::SocketAddr = ep.parse().unwrap();
        self.m.test_keys.tcp_connect.push(TcpConnect {
            ip: sa.ip().to_string(),
            port: sa.port(),
            status: TcpStatus {
                success: f.is_empty(),
                failure: ok_or(f),
                blocked: None,
            },
            t0: 0.0,
            t: secs,
            ..TcpConnect::default()
        });
        self
    }
    fn tls(self, ep: &str, f: &str) -> M {
        self.tls_full(ep, HOST, f, 0.1, "aa")
    }
    fn tls_full(mut self, ep: &str, sni: &str, f: &str, secs: f64, leaf: &str) -> M {
        self.m.test_keys.tls_handshakes.push(TlsHandshake {
            network: "tcp".into(),
            address: ep.into(),
            failure: ok_or(f),
            server_name: sni.into(),
            x_verify_as: sni.into(),
            x_certificate_failure: ok_or(f).filter(Failure::is_certificate_error),
            x_leaf: Some(CertSummary {
                sha256: leaf.into(),
                ..CertSummary::default()
            }),
            t0: 1.0,
            t: 1.0 + secs,
            ..TlsHandshake::default()
        });
        self
    }
    /// A response for `u` from `ep`.
    fn resp(
        mut self,
        u: &str,
        ep: &str,
        code: i64,
        title: &str,
        body: &str,
        hdrs: &[(&str, &str)],
    ) -> M {
        let headers: BTreeMap<String, String> = hdrs
            .iter()
            .map(|(k, v)| (k.to_ascii_lowercase(), v.to_string()))
            .collect();
        let body = if title.is_empty() {
            body.to_string()
        } else {
            format!("<html><head><title>{title}</title></head><body>{body}</body></html>")
        };
        self.reqs.push(HttpTransaction {
            network: "tcp".into(),
            address: ep.into(),
            request: HttpRequestRecord {
                method: "GET".into(),
                url: u.into(),
                ..HttpRequestRecord::default()
            },
            response: HttpResponseRecord {
                code,
                headers,
                x_body_length: body.len() as u64,
                body: MaybeBinary::Text(body),
                ..HttpResponseRecord::default()
            },
            ..HttpTransaction::default()
        });
        self
    }
    /// A 200 page.
    fn page(self, u: &str, ep: &str, title: &str, body: &str) -> M {
        self.resp(
            u,
            ep,
            200,
            title,
            body,
            &[("Server", "nginx"), ("X-Site-Id", "7")],
        )
    }
    /// A redirect.
    fn redirect(self, u: &str, ep: &str, to: &str) -> M {
        self.resp(u, ep, 302, "", "", &[("Location", to)])
    }
    /// A failed round trip.
    fn req_fail(mut self, u: &str, ep: &str, f: &str) -> M {
        self.reqs.push(HttpTransaction {
            address: ep.into(),
            failure: fail(f),
            request: HttpRequestRecord {
                url: u.into(),
                ..HttpRequestRecord::default()
            },
            ..HttpTransaction::default()
        });
        self.m.test_keys.http_experiment_failure = Some(f.into());
        self
    }
    fn http_failure(mut self, f: &str) -> M {
        self.m.test_keys.http_experiment_failure = Some(f.into());
        self
    }
    /// Sets the last response's transfer rate and body length.
    fn transfer(mut self, bytes: u64, rate_bps: f64, sha: &str) -> M {
        let tx = self.reqs.last_mut().unwrap();
        tx.response.x_body_length = bytes;
        tx.response.x_body_sha256 = sha.into();
        tx.x_transfer = TransferStats {
            bytes,
            rate_bps,
            ..TransferStats::default()
        };
        self
    }
    fn control(mut self, c: Ctl) -> M {
        self.m.test_keys.control = Some(c.r);
        self
    }
    fn no_control(mut self) -> M {
        self.m.test_keys.control_failure = Some("connection_reset".into());
        self
    }
    fn fingerprints(mut self, csv: &str) -> M {
        let mut f = Fingerprints::shipped();
        f.add_csv(csv, "test.csv").unwrap();
        self.ctx.fingerprints = f;
        self
    }
    fn asn(mut self, map: &'static [(&'static str, u32)]) -> M {
        self.ctx.asn_db = Some(std::sync::Arc::new(move |ip| {
            map.iter()
                .find(|(a, _)| a.parse::<std::net::IpAddr>().ok() == Some(ip))
                .map(|(_, n)| *n)
        }));
        self
    }
    fn run(mut self) -> Measurement {
        self.reqs.reverse();
        self.m.test_keys.requests = self.reqs;
        analyze(&mut self.m, &self.ctx);
        self.m
    }
}

/// The control's answer under construction.
struct Ctl {
    r: ControlResponse,
}

fn ctl(addrs: &[&str]) -> Ctl {
    let mut r = ControlResponse::default();
    r.dns.addrs = addrs.iter().map(|a| a.to_string()).collect();
    Ctl { r }
}

impl Ctl {
    fn dns_fail(mut self, f: &str) -> Ctl {
        self.r.dns.failure = Some(f.into());
        self.r.dns.addrs.clear();
        self
    }
    fn tcp(mut self, ep: &str, ok: bool) -> Ctl {
        self.r.tcp_connect.insert(
            ep.into(),
            ControlTcp {
                status: ok,
                failure: (!ok).then(|| "connection_refused_error".into()),
            },
        );
        self
    }
    fn tls(mut self, ep: &str, f: &str) -> Ctl {
        self.r.tls_handshake.insert(
            ep.into(),
            ControlTls {
                server_name: HOST.into(),
                status: f.is_empty(),
                failure: (!f.is_empty()).then(|| f.into()),
            },
        );
        self
    }
    fn http(mut self, code: i64, title: &str, len: i64, hdrs: &[(&str, &str)]) -> Ctl {
        self.r.http_request = ControlHttp {
            body_length: len,
            failure: None,
            title: title.into(),
            headers: hdrs
                .iter()
                .map(|(k, v)| (k.to_ascii_lowercase(), v.to_string()))
                .collect(),
            status_code: code,
            ..ControlHttp::default()
        };
        self
    }
    /// The site's normal page.
    fn page(self, title: &str, len: i64) -> Ctl {
        self.http(200, title, len, &[("Server", "nginx"), ("X-Site-Id", "7")])
    }
    fn http_fail(mut self, f: &str) -> Ctl {
        self.r.http_request = ControlHttp {
            failure: Some(f.into()),
            ..ControlHttp::default()
        };
        self
    }
    fn asn(mut self, ip: &str, asn: u32) -> Ctl {
        self.r
            .ip_info
            .insert(ip.into(), ControlIpInfo { asn, flags: 2 });
        self
    }
    fn leaf(mut self, ep: &str, sha: &str) -> Ctl {
        self.r.x_tls_leaf_sha256.insert(ep.into(), sha.into());
        self
    }
    fn handshake_time(mut self, ep: &str, s: f64) -> Ctl {
        self.r.x_tls_handshake_time.insert(ep.into(), s);
        self
    }
    fn transfer(mut self, len: i64, rate: f64, sha: &str) -> Ctl {
        self.r.x_body = Some(ControlBody {
            length: len,
            sha256: sha.into(),
            prefix: String::new(),
        });
        self.r.x_transfer_rate_bps = Some(rate);
        self
    }
    fn hop(mut self, u: &str, addrs: &[&str], code: i64) -> Ctl {
        self.r.x_redirect_chain.push(ControlHop {
            url: u.into(),
            dns: gatewatch::control::protocol::ControlDns {
                failure: None,
                addrs: addrs.iter().map(|a| a.to_string()).collect(),
            },
            status_code: code,
            ..ControlHop::default()
        });
        self
    }
}

// --------------------------------------------------------- expectations ----

/// What a row expects: classic `dns_consistency`, `blocking`, `accessible`,
/// then `x_verdict` status, layer and mechanism.
struct Expect {
    dns: Option<&'static str>,
    blocking: Blocking,
    accessible: Option<bool>,
    status: VerdictStatus,
    layer: Option<&'static str>,
    mechanism: Option<&'static str>,
}

#[allow(clippy::too_many_arguments)]
fn exp(
    dns: Option<&'static str>,
    blocking: Blocking,
    accessible: Option<bool>,
    status: VerdictStatus,
    layer: Option<&'static str>,
    mechanism: Option<&'static str>,
) -> Expect {
    Expect {
        dns,
        blocking,
        accessible,
        status,
        layer,
        mechanism,
    }
}

const C: Option<&str> = Some("consistent");
const I: Option<&str> = Some("inconsistent");
const T: Option<bool> = Some(true);
const F: Option<bool> = Some(false);

/// Checks one row; returns a description of every mismatch.
fn check(name: &str, m: &Measurement, e: &Expect) -> Vec<String> {
    let tk = &m.test_keys;
    let v = tk.x_verdict.clone().unwrap_or_default();
    let got = (
        tk.dns_consistency.as_deref(),
        tk.blocking,
        tk.accessible,
        v.status,
        v.layer.as_deref(),
        v.mechanism.as_deref(),
    );
    let want = (
        e.dns,
        e.blocking,
        e.accessible,
        e.status,
        e.layer,
        e.mechanism,
    );
    if got == want {
        Vec::new()
    } else {
        vec![format!(
            "{name}:\n   want {want:?}\n   got  {got:?}\n   evidence {:?}",
            v.evidence
        )]
    }
}

fn run_table(rows: Vec<(&str, Measurement, Expect)>) {
    let mut bad = Vec::new();
    for (name, m, e) in &rows {
        bad.extend(check(name, m, e));
        // Every verdict explains itself.
        let v = m.test_keys.x_verdict.as_ref().expect("x_verdict set");
        if v.evidence.is_empty() {
            bad.push(format!("{name}: no evidence"));
        }
    }
    assert!(
        bad.is_empty(),
        "{} of {} rows wrong:\n{}",
        bad.len(),
        rows.len(),
        bad.join("\n")
    );
}

use Blocking::{Dns, HttpDiff, HttpFailure, No, TcpIp, Undecided};
use VerdictStatus::{Accessible, Blocked, Down, Inconclusive, Throttled};

const U: &str = "http://news.example/";
const US: &str = "https://news.example/";
const EP80: &str = "203.0.113.7:80";
const EP443: &str = "203.0.113.7:443";

// ---------------------------------------------------------------- table ----

#[test]
fn qa_table_successes_and_traps() {
    let rows = vec![
        (
            "success over http",
            url(U)
                .sys(&[SITE])
                .tcp(EP80, "")
                .page(U, EP80, "Phnom Penh Daily News", "x".repeat(5000).as_str())
                .control(
                    ctl(&[SITE])
                        .tcp(EP80, true)
                        .page("Phnom Penh Daily News", 5100),
                )
                .run(),
            exp(C, No, T, Accessible, None, None),
        ),
        (
            "success over https",
            url(US)
                .sys(&[SITE])
                .tcp(EP443, "")
                .tls(EP443, "")
                .page(US, EP443, "Phnom Penh Daily News", "body")
                .control(
                    ctl(&[SITE])
                        .tcp(EP443, true)
                        .tls(EP443, "")
                        .page("Phnom Penh Daily News", 5100),
                )
                .run(),
            exp(C, No, T, Accessible, None, None),
        ),
        (
            "trap: http to https redirect",
            url(U)
                .sys(&[SITE])
                .tcp(EP80, "")
                .tcp(EP443, "")
                .tls(EP443, "")
                .redirect(U, EP80, US)
                .page(US, EP443, "Phnom Penh Daily News", "body")
                .control(
                    ctl(&[SITE])
                        .tcp(EP80, true)
                        .page("Phnom Penh Daily News", 5100),
                )
                .run(),
            exp(C, No, T, Accessible, None, None),
        ),
        (
            "trap: dynamic content (dates, ids)",
            url(U)
                .sys(&[SITE])
                .tcp(EP80, "")
                .page(U, EP80, "Phnom Penh Daily Tuesday", &"x".repeat(5000))
                .control(
                    ctl(&[SITE])
                        .tcp(EP80, true)
                        .page("Phnom Penh Daily Wednesday", 5600),
                )
                .run(),
            exp(C, No, T, Accessible, None, None),
        ),
        (
            "client-dependent content, same server, no control text: inconclusive (server software alone proves nothing)",
            url(U)
                .sys(&[SITE])
                .tcp(EP80, "")
                .resp(
                    U,
                    EP80,
                    200,
                    "ព័ត៌មាន ថ្ងៃនេះ",
                    &"x".repeat(6000),
                    &[("Server", "Apache/2.4")],
                )
                .control(ctl(&[SITE]).tcp(EP80, true).http(
                    200,
                    "Today's headlines",
                    12000,
                    &[("Server", "apache/2.4")],
                ))
                .run(),
            exp(C, HttpDiff, F, Inconclusive, None, None),
        ),
        (
            "trap: site down everywhere (TCP refused at both)",
            url(U)
                .sys(&[SITE])
                .tcp(EP80, "connection_refused")
                .http_failure("connection_refused")
                .control(
                    ctl(&[SITE])
                        .tcp(EP80, false)
                        .http_fail("connection_refused_error"),
                )
                .run(),
            exp(C, No, F, Down, None, None),
        ),
        (
            "trap: NXDOMAIN everywhere",
            url(U)
                .sys_fail("dns_nxdomain_error")
                .http_failure("dns_nxdomain_error")
                .control(
                    ctl(&[])
                        .dns_fail("dns_name_error")
                        .http_fail("dns_lookup_error"),
                )
                .run(),
            exp(C, No, F, Down, None, None),
        ),
        (
            "trap: no address anywhere (CNAME only)",
            url(U)
                .sys_fail("dns_no_answer")
                .http_failure("dns_no_answer")
                .control(ctl(&[]).http_fail("dns_lookup_error"))
                .run(),
            exp(C, No, F, Down, None, None),
        ),
        (
            "trap: bad certificate everywhere",
            url(US)
                .sys(&[SITE])
                .tcp(EP443, "")
                .tls(EP443, "ssl_unknown_authority")
                .http_failure("ssl_unknown_authority")
                .control(
                    ctl(&[SITE])
                        .tcp(EP443, true)
                        .tls(EP443, "ssl_unknown_authority")
                        .http_fail("unknown_error"),
                )
                .run(),
            exp(C, No, F, Down, None, None),
        ),
        (
            "trap: 15-hop redirect chain (too many redirects at both)",
            {
                let mut b = url("http://news.example/redirect/15")
                    .sys(&[SITE])
                    .tcp(EP80, "");
                for n in (5..=15).rev() {
                    b = b.redirect(
                        &format!("http://news.example/redirect/{n}"),
                        EP80,
                        &format!("/redirect/{}", n - 1),
                    );
                }
                b.http_failure("unknown_failure: stopped after too many redirects")
                    .control(ctl(&[SITE]).tcp(EP80, true).http_fail("unknown_error"))
                    .run()
            },
            exp(C, No, F, Down, None, None),
        ),
        (
            "trap: the site answers 502 to everyone",
            url(US)
                .sys(&[SITE])
                .tcp(EP443, "")
                .tls(EP443, "")
                .resp(US, EP443, 502, "Bad Gateway", "upstream", &[])
                .control(
                    ctl(&[SITE])
                        .tls(EP443, "")
                        .http(502, "Bad Gateway", 120, &[]),
                )
                .run(),
            exp(C, No, T, Down, None, None),
        ),
        (
            "trap: broken redirect Location at both",
            url(U)
                .sys(&[SITE])
                .tcp(EP80, "")
                .redirect(U, EP80, "http://")
                .http_failure("http_invalid_redirect_location_host")
                .control(ctl(&[SITE]).tcp(EP80, true).http_fail("unknown_error"))
                .run(),
            exp(C, No, F, Down, None, None),
        ),
        (
            "trap: slow site (slow for the control too)",
            url(US)
                .sys(&[SITE])
                .tcp(EP443, "")
                .tls(EP443, "")
                .page(US, EP443, "Big Report", "b")
                .transfer(1 << 20, 40_000.0, "feed")
                .control(
                    ctl(&[SITE])
                        .tcp(EP443, true)
                        .tls(EP443, "")
                        .page("Big Report", 1 << 20)
                        .transfer(1 << 20, 60_000.0, "feed"),
                )
                .run(),
            exp(C, No, T, Accessible, None, None),
        ),
        (
            "trap: site answers loopback for everyone",
            url(U)
                .sys(&["127.0.0.1"])
                .control(ctl(&["127.0.0.1"]).http_fail("connection_refused_error"))
                .run(),
            exp(C, No, F, Down, None, None),
        ),
        (
            "trap: control unreachable, http",
            url(U)
                .sys(&[SITE])
                .tcp(EP80, "")
                .page(U, EP80, "Phnom Penh Daily News", "body")
                .no_control()
                .run(),
            exp(None, Undecided, None, Inconclusive, None, None),
        ),
        (
            "trap: control unreachable, https loads",
            url(US)
                .sys(&[SITE])
                .tcp(EP443, "")
                .tls(EP443, "")
                .page(US, EP443, "Phnom Penh Daily News", "body")
                .no_control()
                .run(),
            exp(None, No, T, Accessible, None, None),
        ),
        (
            "trap: control unreachable, connect fails",
            url(U)
                .sys(&[SITE])
                .tcp(EP80, "generic_timeout_error")
                .http_failure("generic_timeout_error")
                .no_control()
                .run(),
            exp(None, Undecided, None, Inconclusive, None, None),
        ),
        (
            "trap: CDN answer elsewhere, TLS-valid for the name",
            url(US)
                .sys(&["203.0.113.99"])
                .tcp("203.0.113.99:443", "")
                .tls("203.0.113.99:443", "")
                .page(US, "203.0.113.99:443", "Phnom Penh Daily News", "body")
                .control(
                    ctl(&[SITE])
                        .asn(SITE, 64500)
                        .page("Phnom Penh Daily News", 5000),
                )
                .asn(&[("203.0.113.99", 64501)])
                .run(),
            exp(I, No, T, Accessible, None, None),
        ),
        (
            "trap: geo-DNS answer in the same ASN",
            url(U)
                .sys(&["203.0.113.99"])
                .tcp("203.0.113.99:80", "")
                .page(U, "203.0.113.99:80", "Phnom Penh Daily News", "b")
                .control(
                    ctl(&[SITE])
                        .asn(SITE, 64500)
                        .asn("203.0.113.99", 64500)
                        .page("Phnom Penh Daily News", 5000),
                )
                .run(),
            exp(C, No, T, Accessible, None, None),
        ),
        (
            "trap: transparent proxy serving the real page",
            url(U)
                .sys(&["198.51.100.17"])
                .tcp("198.51.100.17:80", "")
                .page(
                    U,
                    "198.51.100.17:80",
                    "Phnom Penh Daily News",
                    &"x".repeat(5000),
                )
                .control(ctl(&[SITE]).page("Phnom Penh Daily News", 5100))
                .run(),
            exp(I, No, T, Accessible, None, None),
        ),
        (
            "IP-literal URL loads",
            url("http://203.0.113.7/")
                .tcp(EP80, "")
                .page("http://203.0.113.7/", EP80, "Phnom Penh Daily News", "b")
                .control(ctl(&[]).tcp(EP80, true).page("Phnom Penh Daily News", 5000))
                .run(),
            exp(C, No, T, Accessible, None, None),
        ),
    ];
    run_table(rows);
}

#[test]
fn qa_table_dns() {
    let rows = vec![
        (
            "dns.nxdomain from the system resolver",
            url(U)
                .sys_fail("dns_nxdomain_error")
                .udp("8.8.8.8:53", &[SITE])
                .http_failure("dns_nxdomain_error")
                .control(ctl(&[SITE]).tcp(EP80, true).page("News", 5000))
                .run(),
            exp(I, Dns, F, Blocked, Some("dns"), Some("dns.nxdomain")),
        ),
        (
            "dns.servfail",
            url(U)
                .sys_fail("dns_servfail_error")
                .control(ctl(&[SITE]).page("News", 5000))
                .run(),
            exp(I, Dns, F, Blocked, Some("dns"), Some("dns.servfail")),
        ),
        (
            "dns.timeout (getaddrinfo EAI_AGAIN)",
            url(U)
                .sys_fail("dns_temporary_failure")
                .control(ctl(&[SITE]).page("News", 5000))
                .run(),
            exp(I, Dns, F, Blocked, Some("dns"), Some("dns.timeout")),
        ),
        (
            "dns.localhost",
            url(U)
                .sys(&["127.0.0.1"])
                .control(ctl(&[SITE]).tcp(EP80, true).page("News", 5000))
                .run(),
            exp(I, Dns, F, Blocked, Some("dns"), Some("dns.localhost")),
        ),
        (
            "dns.bogon (private address, no fingerprint)",
            url(U)
                .sys(&["10.10.34.35"])
                .tcp("10.10.34.35:80", "generic_timeout_error")
                .http_failure("generic_timeout_error")
                .control(ctl(&[SITE]).tcp(EP80, true).page("News", 5000))
                .run(),
            exp(I, Dns, F, Blocked, Some("dns"), Some("dns.bogon")),
        ),
        (
            "dns.sinkhole: Metfone's 36.37.242.94 (fingerprint)",
            url(U)
                .sys(&["36.37.242.94"])
                .tcp("36.37.242.94:80", "generic_timeout_error")
                .http_failure("generic_timeout_error")
                .control(ctl(&[SITE]).page("News", 5000))
                .run(),
            exp(I, Dns, F, Blocked, Some("dns"), Some("dns.sinkhole")),
        ),
        (
            "dns.bogon: pfBlockerNG's 10.10.10.1 (fingerprint)",
            url(US)
                .sys(&["10.10.10.1"])
                .tcp("10.10.10.1:443", "")
                .tls("10.10.10.1:443", "ssl_unknown_authority")
                .http_failure("ssl_unknown_authority")
                .control(ctl(&[SITE]).page("News", 5000))
                .run(),
            exp(I, Dns, F, Blocked, Some("dns"), Some("dns.bogon")),
        ),
        (
            "dns.sinkhole to a blockpage server (different ASN)",
            url(U)
                .sys(&["198.51.100.80"])
                .tcp("198.51.100.80:80", "")
                .resp(
                    U,
                    "198.51.100.80:80",
                    200,
                    "Blocked",
                    "This site is blocked",
                    &[("Server", "squid")],
                )
                .control(ctl(&[SITE]).asn(SITE, 64500).page("News", 5000))
                .asn(&[("198.51.100.80", 64511)])
                .run(),
            exp(I, Dns, F, Blocked, Some("dns"), Some("dns.sinkhole")),
        ),
        (
            "dns.sinkhole: TLS MITM via DNS (untrusted certificate)",
            url(US)
                .sys(&["198.51.100.80"])
                .tcp("198.51.100.80:443", "")
                .tls("198.51.100.80:443", "ssl_unknown_authority")
                .http_failure("ssl_unknown_authority")
                .control(ctl(&[SITE]).tls(EP443, "").page("News", 5000))
                .run(),
            exp(I, Dns, F, Blocked, Some("dns"), Some("dns.sinkhole")),
        ),
        (
            "dns.sinkhole: ghost answer for a name the control cannot resolve",
            url(U)
                .sys(&["198.51.100.80"])
                .tcp("198.51.100.80:80", "connection_refused")
                .http_failure("connection_refused")
                .control(
                    ctl(&[])
                        .dns_fail("dns_name_error")
                        .http_fail("dns_lookup_error"),
                )
                .run(),
            exp(I, Dns, F, Blocked, Some("dns"), Some("dns.sinkhole")),
        ),
        (
            "dns.injected: racing replies on the configured resolver",
            url(U)
                .udp_racing("198.51.100.53:53", &["198.51.100.66"], &[SITE])
                .tcp("198.51.100.66:80", "generic_timeout_error")
                .http_failure("generic_timeout_error")
                .control(ctl(&[SITE]).page("News", 5000))
                .run(),
            exp(I, Dns, F, Blocked, Some("dns"), Some("dns.injected")),
        ),
        (
            "dns.injected on a secondary resolver while the system one is clean",
            url(U)
                .sys(&[SITE])
                .udp_racing("8.8.8.8:53", &["198.51.100.66"], &[SITE])
                .tcp(EP80, "")
                .page(U, EP80, "News", "x")
                .control(ctl(&[SITE]).page("News", 5000))
                .run(),
            exp(C, No, T, Blocked, Some("dns"), Some("dns.injected")),
        ),
        (
            "no control: loopback from the system resolver, public elsewhere",
            url(U)
                .sys(&["127.0.0.1"])
                .udp("8.8.8.8:53", &[SITE])
                .no_control()
                .run(),
            exp(
                None,
                Undecided,
                None,
                Blocked,
                Some("dns"),
                Some("dns.localhost"),
            ),
        ),
        (
            "no control: bogon from the system resolver, public elsewhere",
            url(U)
                .sys(&["10.0.0.1"])
                .udp("8.8.8.8:53", &[SITE])
                .no_control()
                .run(),
            exp(
                None,
                Undecided,
                None,
                Blocked,
                Some("dns"),
                Some("dns.bogon"),
            ),
        ),
        (
            "no control: unknown-root certificate where other resolvers map elsewhere",
            url(US)
                .sys(&["198.51.100.80"])
                .udp("8.8.8.8:53", &[SITE])
                .tcp("198.51.100.80:443", "")
                .tls("198.51.100.80:443", "ssl_unknown_authority")
                .http_failure("ssl_unknown_authority")
                .no_control()
                .run(),
            exp(
                None,
                Undecided,
                None,
                Blocked,
                Some("dns"),
                Some("dns.sinkhole"),
            ),
        ),
        (
            "no control: NXDOMAIN with no other resolver",
            url(U).sys_fail("dns_nxdomain_error").no_control().run(),
            exp(None, Undecided, None, Inconclusive, None, None),
        ),
    ];
    run_table(rows);
}

#[test]
fn qa_table_tcp_tls_http() {
    let rows = vec![
        (
            "tcp.timeout (IP:port blackhole)",
            url(US)
                .sys(&[SITE])
                .tcp(EP443, "generic_timeout_error")
                .http_failure("generic_timeout_error")
                .control(ctl(&[SITE]).tcp(EP443, true).page("News", 5000))
                .run(),
            exp(C, TcpIp, F, Blocked, Some("tcp_ip"), Some("tcp.timeout")),
        ),
        (
            "tcp.refused (RST to the SYN)",
            url(U)
                .sys(&[SITE])
                .tcp(EP80, "connection_refused")
                .http_failure("connection_refused")
                .control(ctl(&[SITE]).tcp(EP80, true).page("News", 5000))
                .run(),
            exp(C, TcpIp, F, Blocked, Some("tcp_ip"), Some("tcp.refused")),
        ),
        (
            "tcp.unreachable (ICMP)",
            url(U)
                .sys(&[SITE])
                .tcp(EP80, "host_unreachable")
                .http_failure("host_unreachable")
                .control(ctl(&[SITE]).tcp(EP80, true).page("News", 5000))
                .run(),
            exp(
                C,
                TcpIp,
                F,
                Blocked,
                Some("tcp_ip"),
                Some("tcp.unreachable"),
            ),
        ),
        (
            "tls.reset (SNI filtering)",
            url(US)
                .sys(&[SITE])
                .tcp(EP443, "")
                .tls(EP443, "connection_reset")
                .http_failure("connection_reset")
                .control(
                    ctl(&[SITE])
                        .tcp(EP443, true)
                        .tls(EP443, "")
                        .page("News", 5000),
                )
                .run(),
            exp(C, HttpFailure, F, Blocked, Some("tls"), Some("tls.reset")),
        ),
        (
            "tls.timeout (drop after the ClientHello)",
            url(US)
                .sys(&[SITE])
                .tcp(EP443, "")
                .tls(EP443, "generic_timeout_error")
                .http_failure("generic_timeout_error")
                .control(
                    ctl(&[SITE])
                        .tcp(EP443, true)
                        .tls(EP443, "")
                        .page("News", 5000),
                )
                .run(),
            exp(C, HttpFailure, F, Blocked, Some("tls"), Some("tls.timeout")),
        ),
        (
            "tls.eof (FIN after the ClientHello)",
            url(US)
                .sys(&[SITE])
                .tcp(EP443, "")
                .tls(EP443, "eof_error")
                .http_failure("eof_error")
                .control(
                    ctl(&[SITE])
                        .tcp(EP443, true)
                        .tls(EP443, "")
                        .page("News", 5000),
                )
                .run(),
            exp(C, HttpFailure, F, Blocked, Some("tls"), Some("tls.eof")),
        ),
        (
            "tls.mitm (our chain refused, the control's verified)",
            url(US)
                .sys(&[SITE])
                .tcp(EP443, "")
                .tls_full(EP443, HOST, "ssl_unknown_authority", 0.1, "bad0")
                .http_failure("ssl_unknown_authority")
                .control(
                    ctl(&[SITE])
                        .tcp(EP443, true)
                        .tls(EP443, "")
                        .leaf(EP443, "900d")
                        .page("News", 5000),
                )
                .run(),
            exp(C, HttpFailure, F, Blocked, Some("tls"), Some("tls.mitm")),
        ),
        (
            "http.reset (Host-header DPI)",
            url(U)
                .sys(&[SITE])
                .tcp(EP80, "")
                .req_fail(U, EP80, "connection_reset")
                .control(ctl(&[SITE]).tcp(EP80, true).page("News", 5000))
                .run(),
            exp(C, HttpFailure, F, Blocked, Some("http"), Some("http.reset")),
        ),
        (
            "http.eof",
            url(U)
                .sys(&[SITE])
                .tcp(EP80, "")
                .req_fail(U, EP80, "eof_error")
                .control(ctl(&[SITE]).tcp(EP80, true).page("News", 5000))
                .run(),
            exp(C, HttpFailure, F, Blocked, Some("http"), Some("http.eof")),
        ),
        (
            "http.timeout",
            url(U)
                .sys(&[SITE])
                .tcp(EP80, "")
                .req_fail(U, EP80, "generic_timeout_error")
                .control(ctl(&[SITE]).tcp(EP80, true).page("News", 5000))
                .run(),
            exp(
                C,
                HttpFailure,
                F,
                Blocked,
                Some("http"),
                Some("http.timeout"),
            ),
        ),
        (
            "trap: http timeout at both",
            url(U)
                .sys(&[SITE])
                .tcp(EP80, "")
                .req_fail(U, EP80, "generic_timeout_error")
                .control(
                    ctl(&[SITE])
                        .tcp(EP80, true)
                        .http_fail("generic_timeout_error"),
                )
                .run(),
            exp(C, No, F, Down, None, None),
        ),
        (
            "redirect, then NXDOMAIN for the target (no per-hop control)",
            url("https://short.example/x")
                .query("getaddrinfo", "", "short.example", &["203.0.113.50"], "")
                .tcp("203.0.113.50:443", "")
                .tls_full("203.0.113.50:443", "short.example", "", 0.1, "aa")
                .redirect("https://short.example/x", "203.0.113.50:443", US)
                .query("getaddrinfo", "", HOST, &[], "dns_nxdomain_error")
                .http_failure("dns_nxdomain_error")
                .control(ctl(&["203.0.113.50"]).page("News", 5000))
                .run(),
            exp(C, Dns, F, Blocked, Some("dns"), Some("dns.nxdomain")),
        ),
        (
            "redirect, then connection refused (control hop data)",
            url("https://short.example/x")
                .query("getaddrinfo", "", "short.example", &["203.0.113.50"], "")
                .tcp("203.0.113.50:443", "")
                .tls_full("203.0.113.50:443", "short.example", "", 0.1, "aa")
                .redirect("https://short.example/x", "203.0.113.50:443", U)
                .query("getaddrinfo", "", HOST, &[SITE], "")
                .tcp(EP80, "connection_refused")
                .http_failure("connection_refused")
                .control({
                    let mut c = ctl(&["203.0.113.50"])
                        .page("News", 5000)
                        .hop("https://short.example/x", &["203.0.113.50"], 302)
                        .hop(U, &[SITE], 200);
                    c.r.x_redirect_chain[1].tcp_connect.insert(
                        EP80.into(),
                        ControlTcp {
                            status: true,
                            failure: None,
                        },
                    );
                    c
                })
                .run(),
            exp(C, TcpIp, F, Blocked, Some("tcp_ip"), Some("tcp.refused")),
        ),
    ];
    run_table(rows);
}

const KH_FORBIDDEN: &str = "<html><head><title>ERROR: Forbidden</title></head> \n<body><h2>ERROR: Forbidden</h2><p>Access denied.</p></body></html>";

#[test]
fn qa_table_pages() {
    let rows = vec![
        (
            "http.blockpage: Cogetel 'ERROR: Forbidden' (fingerprint, 403)",
            url(U).sys(&[SITE]).tcp(EP80, "").resp(U, EP80, 403, "", KH_FORBIDDEN, &[("Server", "nginx")])
                .control(ctl(&[SITE]).tcp(EP80, true).page("News", 5000)).run(),
            exp(C, HttpDiff, F, Blocked, Some("http"), Some("http.blockpage")),
        ),
        (
            "http.blockpage: injected page without a fingerprint",
            url(U).sys(&[SITE]).tcp(EP80, "").resp(U, EP80, 200, "Access Denied", "blocked by order", &[("Server", "squid")])
                .control(ctl(&[SITE]).tcp(EP80, true).page("Phnom Penh Daily News", 5000)).run(),
            exp(C, HttpDiff, F, Blocked, Some("http"), Some("http.blockpage")),
        ),
        (
            "http.blockpage: 451",
            url(U).sys(&[SITE]).tcp(EP80, "").resp(U, EP80, 451, "Unavailable", "by order", &[("Server", "squid")])
                .control(ctl(&[SITE]).tcp(EP80, true).page("Phnom Penh Daily News", 5000)).run(),
            exp(C, HttpDiff, F, Blocked, Some("http"), Some("http.blockpage")),
        ),
        (
            "http.redirect_to_blockpage (the control was not redirected)",
            url(U).sys(&[SITE]).tcp(EP80, "").redirect(U, EP80, "http://warning.example/?u=news")
                .query("getaddrinfo", "", "warning.example", &["198.51.100.9"], "")
                .resp("http://warning.example/?u=news", "198.51.100.9:80", 200, "Warning", "blocked", &[("Server", "x")])
                .control(ctl(&[SITE]).page("Phnom Penh Daily News", 5000).hop(U, &[SITE], 200)).run(),
            exp(C, HttpDiff, F, Blocked, Some("http"), Some("http.redirect_to_blockpage")),
        ),
        (
            "http.redirect_to_blockpage (Location fingerprint)",
            url(U).sys(&[SITE]).tcp(EP80, "").redirect(U, EP80, "http://block.example/?u=news")
                .query("getaddrinfo", "", "block.example", &["198.51.100.9"], "")
                .resp("http://block.example/?u=news", "198.51.100.9:80", 200, "Notice", "blocked", &[])
                .fingerprints("name,scope,location_found,pattern_type,pattern,expected_countries\nt.loc,nat,header.location,prefix,http://block.example/,KH\n")
                .control(ctl(&[SITE]).page("Phnom Penh Daily News", 5000)).run(),
            exp(C, HttpDiff, F, Blocked, Some("http"), Some("http.redirect_to_blockpage")),
        ),
        (
            "server_side: Cloudflare challenge over http (fp fingerprint)",
            url(U).sys(&[SITE]).tcp(EP80, "").resp(U, EP80, 503, "Just a moment...", "checking your browser", &[("Server", "cloudflare")])
                .control(ctl(&[SITE]).tcp(EP80, true).http(200, "Phnom Penh Daily News", 5000, &[("Server", "cloudflare")])).run(),
            exp(C, HttpDiff, F, Accessible, Some("http"), Some("server_side")),
        ),
        (
            "server_side: Cloudflare challenge over https",
            url(US).sys(&[SITE]).tcp(EP443, "").tls(EP443, "").resp(US, EP443, 503, "Just a moment...", "checking", &[("Server", "cloudflare")])
                .control(ctl(&[SITE]).tls(EP443, "").http(200, "Phnom Penh Daily News", 5000, &[("Server", "cloudflare")])).run(),
            exp(C, No, T, Accessible, Some("http"), Some("server_side")),
        ),
        (
            "server_side: geo-block 403 over https",
            url(US).sys(&[SITE]).tcp(EP443, "").tls(EP443, "").resp(US, EP443, 403, "Not available in your region", "sorry", &[("Server", "nginx")])
                .control(ctl(&[SITE]).tls(EP443, "").page("Phnom Penh Daily News", 5000)).run(),
            exp(C, No, T, Accessible, Some("http"), Some("server_side")),
        ),
        (
            "server_side: geo-block 403 over http from the same server",
            url(U).sys(&[SITE]).tcp(EP80, "").resp(U, EP80, 403, "Not available in your region", "sorry", &[("Server", "nginx"), ("X-Site-Id", "7")])
                .control(ctl(&[SITE]).tcp(EP80, true).page("Phnom Penh Daily News", 5000)).run(),
            exp(C, HttpDiff, F, Accessible, Some("http"), Some("server_side")),
        ),
        (
            "throttling: transfer rate (far below this line's other pages)",
            url(US).sys(&[SITE]).tcp(EP443, "").tls(EP443, "").page(US, EP443, "Big Report", "b")
                .line(1_000_000.0).transfer(1 << 20, 15_000.0, "feed")
                .control(ctl(&[SITE]).tls(EP443, "").page("Big Report", 1 << 20).transfer(1 << 20, 2_000_000.0, "feed")).run(),
            exp(C, No, T, Throttled, Some("throttling"), Some("throttling")),
        ),
        (
            "trap: a slow line is not throttling (other pages as slow)",
            url(US).sys(&[SITE]).tcp(EP443, "").tls(EP443, "").page(US, EP443, "Big Report", "b")
                .line(20_000.0).transfer(1 << 20, 15_000.0, "feed")
                .control(ctl(&[SITE]).tls(EP443, "").page("Big Report", 1 << 20).transfer(1 << 20, 2_000_000.0, "feed")).run(),
            exp(C, No, T, Accessible, None, None),
        ),
        (
            "trap: no line baseline, no throttling by rate",
            url(US).sys(&[SITE]).tcp(EP443, "").tls(EP443, "").page(US, EP443, "Big Report", "b")
                .transfer(1 << 20, 15_000.0, "feed")
                .control(ctl(&[SITE]).tls(EP443, "").page("Big Report", 1 << 20).transfer(1 << 20, 2_000_000.0, "feed")).run(),
            exp(C, No, T, Accessible, None, None),
        ),
        (
            "throttling: TLS handshake time",
            url(US).sys(&[SITE]).tcp_timed(EP443, "", 0.08).tls_full(EP443, HOST, "", 3.5, "aa").page(US, EP443, "News", "b")
                .control(ctl(&[SITE]).tls(EP443, "").page("News", 5000).handshake_time(EP443, 0.12)).run(),
            exp(C, No, T, Throttled, Some("throttling"), Some("throttling")),
        ),
        (
            "trap: small fast-enough page is not throttling",
            url(US).sys(&[SITE]).tcp(EP443, "").tls(EP443, "").page(US, EP443, "News", "b")
                .transfer(20_000, 5_000.0, "feed")
                .control(ctl(&[SITE]).tls(EP443, "").page("News", 20_000).transfer(20_000, 2_000_000.0, "feed")).run(),
            exp(C, No, T, Accessible, None, None),
        ),
        (
            "no control: blockpage fingerprint still decides",
            url(U).sys(&[SITE]).tcp(EP80, "").resp(U, EP80, 403, "", KH_FORBIDDEN, &[]).no_control().run(),
            exp(None, Undecided, None, Blocked, Some("http"), Some("http.blockpage")),
        ),
    ];
    run_table(rows);
}

#[test]
fn verdict_details_confidence_article6_evidence() {
    // DNS fingerprint in the probe's country: confirmed, "block", named.
    let m = url(U)
        .sys(&["36.37.242.94"])
        .control(ctl(&[SITE]).page("News", 5000))
        .run();
    let v = m.test_keys.x_verdict.unwrap();
    assert_eq!(v.confidence.as_deref(), Some("confirmed"));
    assert_eq!(v.nig_article6.as_deref(), Some("block"));
    assert_eq!(v.fingerprints, vec!["gw.kh_dns_metfone".to_string()]);
    assert!(
        v.evidence[0].contains("the system resolver answered 36.37.242.94"),
        "{:?}",
        v.evidence
    );
    assert!(
        v.evidence.iter().any(|e| e.contains("203.0.113.7")),
        "{:?}",
        v.evidence
    );

    // The brief's example sentence: an ISP resolver, a loopback answer.
    let m = url(US)
        .udp("198.51.100.53:53", &["127.0.0.1"])
        .control(ctl(&[SITE]).page("News", 5000))
        .run();
    let v = m.test_keys.x_verdict.unwrap();
    assert_eq!(v.mechanism.as_deref(), Some("dns.localhost"));
    assert!(
        v.evidence[0].contains(
            "resolver 198.51.100.53:53 (udp) answered 127.0.0.1; the control resolved 203.0.113.7"
        ),
        "{:?}",
        v.evidence
    );

    // TLS reset: a disconnect, likely.
    let m = url(US)
        .sys(&[SITE])
        .tcp(EP443, "")
        .tls(EP443, "connection_reset")
        .control(ctl(&[SITE]).tls(EP443, "").page("News", 5000))
        .run();
    let v = m.test_keys.x_verdict.unwrap();
    assert_eq!(
        (v.confidence.as_deref(), v.nig_article6.as_deref()),
        (Some("likely"), Some("disconnect"))
    );

    // ... confirmed when the RST's IP TTL shows it was injected.
    let mut b = url(US)
        .sys(&[SITE])
        .tcp(EP443, "")
        .tls(EP443, "connection_reset")
        .control(ctl(&[SITE]).tls(EP443, "").page("News", 5000));
    b.m.test_keys.x_injection.push(InjectionEvidence {
        kind: "tcp.rst_ttl_mismatch".into(),
        target: EP443.into(),
        detail: "RST with IP TTL 61 while the SYN-ACKs arrived with TTL 52".into(),
    });
    let v = b.run().test_keys.x_verdict.unwrap();
    assert_eq!(
        v.confidence.as_deref(),
        Some("confirmed"),
        "{:?}",
        v.evidence
    );
    assert!(v.evidence.last().unwrap().contains("injected RST"));

    // MITM with a different leaf at the control: confirmed.
    let m = url(US)
        .sys(&[SITE])
        .tcp(EP443, "")
        .tls_full(EP443, HOST, "ssl_unknown_authority", 0.1, "bad0")
        .control(
            ctl(&[SITE])
                .tls(EP443, "")
                .leaf(EP443, "900d")
                .page("News", 5000),
        )
        .run();
    assert_eq!(
        m.test_keys.x_verdict.unwrap().confidence.as_deref(),
        Some("confirmed")
    );

    // Throttling: degrade.
    let m = url(US)
        .sys(&[SITE])
        .tcp(EP443, "")
        .tls(EP443, "")
        .page(US, EP443, "Big", "b")
        .line(1_000_000.0)
        .transfer(1 << 20, 15_000.0, "feed")
        .control(ctl(&[SITE]).tls(EP443, "").page("Big", 1 << 20).transfer(
            1 << 20,
            2_000_000.0,
            "feed",
        ))
        .run();
    assert_eq!(
        m.test_keys.x_verdict.unwrap().nig_article6.as_deref(),
        Some("degrade")
    );

    // Server-side: no confidence, no article 6, the fp fingerprint named.
    let m = url(U)
        .sys(&[SITE])
        .tcp(EP80, "")
        .resp(U, EP80, 503, "Just a moment...", "c", &[])
        .control(ctl(&[SITE]).page("News", 5000))
        .run();
    let v = m.test_keys.x_verdict.unwrap();
    assert_eq!((v.confidence, v.nig_article6), (None, None));
    assert_eq!(
        v.fingerprints,
        vec!["gw.fp_cloudflare_challenge".to_string()]
    );

    // No control, self-evident loopback: only "possible".
    let m = url(U)
        .sys(&["127.0.0.1"])
        .udp("8.8.8.8:53", &[SITE])
        .no_control()
        .run();
    assert_eq!(
        m.test_keys.x_verdict.unwrap().confidence.as_deref(),
        Some("possible")
    );

    // Classic diff keys on a blockpage.
    let m = url(U)
        .sys(&[SITE])
        .tcp(EP80, "")
        .resp(
            U,
            EP80,
            200,
            "Access Denied",
            "blocked",
            &[("Server", "squid")],
        )
        .control(ctl(&[SITE]).page("Phnom Penh Daily News", 5000))
        .run();
    let tk = &m.test_keys;
    assert_eq!(tk.status_code_match, Some(true));
    assert_eq!(tk.body_length_match, Some(false));
    assert_eq!(tk.headers_match, Some(false));
    assert_eq!(tk.title_match, Some(false));
    assert!(tk.body_proportion.unwrap() < 0.1);
}

#[test]
fn lte_flags_report_every_facet() {
    // System DNS tampered, yet the page loaded via another resolver's
    // address: DNS | success (OONI's 33).
    let m = url(US)
        .sys(&["10.10.34.35"])
        .udp("8.8.8.8:53", &[SITE])
        .tcp("10.10.34.35:443", "generic_timeout_error")
        .tcp(EP443, "")
        .tls(EP443, "")
        .page(US, EP443, "News", "b")
        .control(
            ctl(&[SITE])
                .tcp(EP443, true)
                .tls(EP443, "")
                .page("News", 5000),
        )
        .run();
    assert_eq!(m.test_keys.x_dns_flags, Some(1 | 4));
    assert_eq!(m.test_keys.x_blocking_flags, Some(1 | 32));
    assert_eq!(m.test_keys.blocking, Dns);
    // SNI reset: TLS and nothing else.
    let m = url(US)
        .sys(&[SITE])
        .tcp(EP443, "")
        .tls(EP443, "connection_reset")
        .control(
            ctl(&[SITE])
                .tcp(EP443, true)
                .tls(EP443, "")
                .page("News", 5000),
        )
        .run();
    assert_eq!(
        (m.test_keys.x_dns_flags, m.test_keys.x_blocking_flags),
        (Some(0), Some(4))
    );
    // A cleartext blockpage: HTTP diff.
    let m = url(U)
        .sys(&[SITE])
        .tcp(EP80, "")
        .resp(U, EP80, 200, "Access Denied", "x", &[])
        .control(ctl(&[SITE]).page("Phnom Penh Daily News", 5000))
        .run();
    assert_eq!(m.test_keys.x_blocking_flags, Some(16));
    // An unexpected DNS failure.
    let m = url(U)
        .sys_fail("dns_nxdomain_error")
        .control(ctl(&[SITE]).page("News", 5000))
        .run();
    assert_eq!(
        (m.test_keys.x_dns_flags, m.test_keys.x_blocking_flags),
        (Some(2), Some(1))
    );
}

#[test]
fn bad_input_is_inconclusive_not_a_panic() {
    let mut m = Measurement {
        input: Some("ftp://news.example/".into()),
        ..Measurement::default()
    };
    analyze(&mut m, &AnalysisContext::default());
    assert_eq!(m.test_keys.x_verdict.unwrap().status, Inconclusive);
    let mut m = Measurement::default();
    analyze(&mut m, &AnalysisContext::default());
    assert_eq!(m.test_keys.x_verdict.unwrap().status, Inconclusive);
    // A fetch cut short by the deadline is no evidence of a block.
    let mut b = url(U)
        .sys(&[SITE])
        .tcp(EP80, "generic_timeout_error")
        .control(ctl(&[SITE]).tcp(EP80, true).page("News", 5000));
    b.m.test_keys.x_interrupted = Some("deadline".into());
    assert_eq!(b.run().test_keys.x_verdict.unwrap().status, Inconclusive);
    // A URL with nothing measured.
    let mut m = Measurement {
        input: Some(U.into()),
        ..Measurement::default()
    };
    analyze(&mut m, &AnalysisContext::default());
    assert_eq!(m.test_keys.x_verdict.unwrap().status, Inconclusive);
}

mod real_pages;

// ------------------------------------------------------------- pipeline ----
//
// The real pipeline: `gatewatch::web::measure` with the probe's UDP resolver
// a (possibly lying) fake, the in-process control server resolving through
// an honest fake, then `analyze`. The honest site lives on 127.0.0.2, a
// blockpage or interception server on 127.0.0.3 (same port); both are
// treated as public by the probe, the control and the analysis.

impl M {
    /// The last handshake's finer certificate reason and its verdict
    /// apart from the time (`valid` or a failure string).
    fn cert_reason(mut self, reason: &str, untimed: &str) -> M {
        if let Some(h) = self.m.test_keys.tls_handshakes.last_mut() {
            h.x_certificate_reason = Some(reason.into());
            h.x_certificate_untimed = (!untimed.is_empty()).then(|| untimed.to_string());
        }
        self
    }
    /// The run's clock: `offset` seconds to the reference, in doubt or not.
    fn clock(mut self, offset: Option<i64>, in_doubt: bool) -> M {
        self.m.x_clock_offset = offset;
        self.m.x_clock = Some(gatewatch::model::ClockNote {
            source: "control x_time".into(),
            in_doubt,
            ..Default::default()
        });
        self
    }
}

/// A TLS refusal at the probe, over HOST:443, the control having verified.
fn refused(f: &str, leaf: &str, ctl_leaf: Option<&str>) -> M {
    let mut c = ctl(&[SITE])
        .tcp(EP443, true)
        .tls(EP443, "")
        .page("News", 5000);
    if let Some(l) = ctl_leaf {
        c = c.leaf(EP443, l);
    }
    url(US)
        .sys(&[SITE])
        .tcp(EP443, "")
        .tls_full(EP443, HOST, f, 0.1, leaf)
        .http_failure(f)
        .control(c)
}

#[test]
fn qa_table_clock_is_not_interception() {
    let inc = || exp(C, Blocking::Undecided, None, Inconclusive, None, None);
    let mitm = || exp(C, HttpFailure, F, Blocked, Some("tls"), Some("tls.mitm"));
    run_table(vec![
        (
            "clock 400 days behind: expired-looking, same leaf as the control",
            refused("ssl_invalid_certificate", "900d", Some("900d"))
                .cert_reason("not_yet_valid", "valid")
                .clock(Some(400 * 86_400), true)
                .run(),
            inc(),
        ),
        (
            "clock 3 years ahead: expired, no leaf from the control, valid apart from the time",
            refused("ssl_invalid_certificate", "900d", None)
                .cert_reason("expired", "valid")
                .clock(Some(-3 * 365 * 86_400), true)
                .run(),
            inc(),
        ),
        (
            "no reference clock: not yet valid, nothing else known",
            refused("ssl_invalid_certificate", "900d", None)
                .cert_reason("not_yet_valid", "")
                .run(),
            inc(),
        ),
        (
            "clock right, expired at the probe only: still not interception",
            refused("ssl_invalid_certificate", "900d", None)
                .cert_reason("expired", "valid")
                .clock(Some(3), false)
                .run(),
            inc(),
        ),
        (
            "interception under a wrong clock: another leaf than the control's",
            refused("ssl_invalid_certificate", "bad0", Some("900d"))
                .cert_reason("not_yet_valid", "ssl_unknown_authority")
                .clock(Some(400 * 86_400), true)
                .run(),
            mitm(),
        ),
        (
            "interception under a wrong clock: no control leaf, issuer untrusted apart from the time",
            refused("ssl_invalid_certificate", "bad0", None)
                .cert_reason("expired", "ssl_unknown_authority")
                .clock(Some(-2 * 86_400), true)
                .run(),
            mitm(),
        ),
        (
            "interception with a right clock: untrusted issuer, no control leaf",
            refused("ssl_unknown_authority", "bad0", None)
                .cert_reason("unknown_issuer", "")
                .clock(Some(0), false)
                .run(),
            mitm(),
        ),
    ]);
    // The evidence names the clock and says by how much.
    let m = refused("ssl_invalid_certificate", "900d", Some("900d"))
        .cert_reason("not_yet_valid", "valid")
        .clock(Some(400 * 86_400), true)
        .run();
    let ev = m.test_keys.x_verdict.unwrap().evidence.join(" | ");
    assert!(
        ev.contains("the probe's clock was 400 days behind the reference time"),
        "{ev}"
    );
}

mod pipeline {
    use std::net::{IpAddr, Ipv4Addr, SocketAddr};
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::{Arc, Mutex};
    use std::time::Duration;

    use gatewatch::analysis::{analyze, AnalysisContext};
    use gatewatch::control::client::ControlClient;
    use gatewatch::control::server::serve;
    use gatewatch::model::{Blocking, Measurement, VerdictStatus};
    use gatewatch::web::{measure, WebSettings};
    use tokio::net::TcpListener;
    use tokio_rustls::TlsAcceptor;

    use super::{check, exp, Expect, C, F, I, T};
    use crate::fakes::ca::{self, TestCa, TestCert};
    use crate::fakes::dns::{self as fdns, DnsFake, Reply, Script};
    use crate::fakes::http::{self as fhttp, response, Behaviour, SeenRequest};
    use crate::fakes::tls as ftls;
    use Blocking::{Dns, No};
    use VerdictStatus::{Accessible, Blocked, Down};

    const SITE: Ipv4Addr = Ipv4Addr::new(127, 0, 0, 2);
    const BLOCK: Ipv4Addr = Ipv4Addr::new(127, 0, 0, 3);
    const HOST: &str = "news.example";

    fn public() -> Vec<ipnet::IpNet> {
        vec![
            "127.0.0.2/32".parse().unwrap(),
            "127.0.0.3/32".parse().unwrap(),
        ]
    }

    /// The control server, its client, and the CA both sides trust.
    struct World {
        ca: TestCa,
        client: ControlClient,
        _dir: tempfile::TempDir,
        _honest: DnsFake,
    }

    /// Starts the control with an honest resolver answering `honest`.
    async fn world(honest: Reply) -> World {
        let ca = TestCa::new("gatewatch verdicts test CA");
        let dir = tempfile::tempdir().unwrap();
        let pem = ca.write_pem(dir.path());
        let honest = fdns::spawn(Script::always(honest)).await;
        let mut cfg = crate::control::config(honest.addr, &[]);
        cfg.treat_as_public = public();
        cfg.ca_files = vec![pem];
        cfg.steps.http = Duration::from_secs(5);
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            let _ = serve(cfg, listener, std::future::pending()).await;
        });
        let client = ControlClient::new(vec![format!("http://{addr}/")], &[])
            .unwrap()
            .with_timing(Duration::from_secs(20), Duration::from_secs(25));
        World {
            ca,
            client,
            _dir: dir,
            _honest: honest,
        }
    }

    impl World {
        /// Measures `url` with the probe's resolver answering `liar`, then
        /// analyses it.
        async fn run(&self, url: &str, liar: Reply) -> Measurement {
            let liar = fdns::spawn(Script::always(liar)).await;
            let s = WebSettings {
                resolvers: vec![liar.addr],
                system_resolver: false,
                roots: self.ca.roots(),
                treat_as_public: public(),
                listen_after_first: Duration::from_millis(100),
                tcp: Duration::from_secs(3),
                tls: Duration::from_secs(3),
                http: Duration::from_secs(5),
                url_deadline: Duration::from_secs(30),
                ..WebSettings::default()
            };
            let keys = measure(url, &s, Some(&self.client)).await;
            let mut m = Measurement {
                input: Some(url.to_string()),
                probe_cc: "KH".into(),
                test_keys: keys,
                ..Measurement::default()
            };
            let ctx = AnalysisContext {
                probe_cc: "KH".into(),
                treat_as_public: public(),
                ..AnalysisContext::default()
            };
            analyze(&mut m, &ctx);
            m
        }
    }

    fn answer(ip: Ipv4Addr) -> Reply {
        Reply::Answer(vec![IpAddr::V4(ip)])
    }

    fn nxdomain() -> Reply {
        Reply::Rcode(3)
    }

    fn page(title: &str, text: &str) -> Vec<u8> {
        response(
            200,
            "OK",
            &[("Content-Type", "text/html"), ("Server", "fake-news/1.0")],
            &fhttp::page(title, text),
        )
    }

    const ARTICLE: &str = "The National Assembly met today to discuss the budget. \
        Reporters from several outlets attended the session, which lasted four hours.";

    /// Serves `a` on SITE and `b` on BLOCK, same port, plain or TLS.
    async fn twins(a: Behaviour, b: Behaviour, tls: Option<(&TestCert, &TestCert)>) -> u16 {
        let (la, lb) = loop {
            let la = TcpListener::bind((SITE, 0)).await.unwrap();
            let port = la.local_addr().unwrap().port();
            if let Ok(lb) = TcpListener::bind((BLOCK, port)).await {
                break (la, lb);
            }
        };
        let port = la.local_addr().unwrap().port();
        let acceptors = tls.map(|(ca, cb)| {
            (
                TlsAcceptor::from(ftls::server_config(ca)),
                TlsAcceptor::from(ftls::server_config(cb)),
            )
        });
        let pairs = [
            (la, a, acceptors.as_ref().map(|p| p.0.clone())),
            (lb, b, acceptors.as_ref().map(|p| p.1.clone())),
        ];
        for (l, behaviour, acceptor) in pairs {
            let log: Arc<Mutex<Vec<SeenRequest>>> = Arc::default();
            tokio::spawn(async move {
                while let Ok((s, _)) = l.accept().await {
                    let (b, log, acc) = (behaviour.clone(), Arc::clone(&log), acceptor.clone());
                    tokio::spawn(async move {
                        match acc {
                            Some(acc) => {
                                if let Ok(t) = acc.accept(s).await {
                                    fhttp::serve(t, b, log).await;
                                }
                            }
                            None => fhttp::serve(s, b, log).await,
                        }
                    });
                }
            });
        }
        port
    }

    fn fixed(bytes: Vec<u8>) -> Behaviour {
        Behaviour::Respond(bytes)
    }

    async fn assert_row(name: &str, m: &Measurement, e: Expect) {
        let bad = check(name, m, &e);
        assert!(
            bad.is_empty(),
            "{}\n   control_failure {:?}\n   http_experiment_failure {:?}",
            bad.join("\n"),
            m.test_keys.control_failure,
            m.test_keys.http_experiment_failure
        );
    }

    #[tokio::test]
    async fn pipeline_success_and_dns_tampering() {
        let w = world(answer(SITE)).await;
        let port = twins(
            fixed(page("Phnom Penh Daily News", ARTICLE)),
            fixed(fhttp::blockpage("Website Blocked")),
            None,
        )
        .await;
        let url = format!("http://{HOST}:{port}/");

        let m = w.run(&url, answer(SITE)).await;
        assert_row(
            "pipeline: success",
            &m,
            exp(C, No, T, Accessible, None, None),
        )
        .await;

        let m = w.run(&url, nxdomain()).await;
        assert_row(
            "pipeline: dns.nxdomain",
            &m,
            exp(I, Dns, F, Blocked, Some("dns"), Some("dns.nxdomain")),
        )
        .await;

        let m = w.run(&url, Reply::Rcode(2)).await;
        assert_row(
            "pipeline: dns.servfail",
            &m,
            exp(I, Dns, F, Blocked, Some("dns"), Some("dns.servfail")),
        )
        .await;

        let m = w.run(&url, answer(Ipv4Addr::LOCALHOST)).await;
        assert_row(
            "pipeline: dns.localhost",
            &m,
            exp(I, Dns, F, Blocked, Some("dns"), Some("dns.localhost")),
        )
        .await;
        let ev = &m.test_keys.x_verdict.as_ref().unwrap().evidence;
        assert!(
            ev[0].contains("answered 127.0.0.1; the control resolved 127.0.0.2"),
            "{ev:?}"
        );

        let m = w.run(&url, answer(BLOCK)).await;
        assert_row(
            "pipeline: blockpage via DNS",
            &m,
            exp(I, Dns, F, Blocked, Some("dns"), Some("dns.sinkhole")),
        )
        .await;
        let ev = m.test_keys.x_verdict.as_ref().unwrap().evidence.join(" | ");
        assert!(ev.contains("Website Blocked"), "{ev}");
    }

    #[tokio::test]
    async fn pipeline_fingerprinted_blockpage_via_dns() {
        let w = world(answer(SITE)).await;
        let port = twins(
            fixed(page("Phnom Penh Daily News", ARTICLE)),
            fixed(response(
                403,
                "Forbidden",
                &[("Server", "squid")],
                super::KH_FORBIDDEN.as_bytes(),
            )),
            None,
        )
        .await;
        let m = w
            .run(&format!("http://{HOST}:{port}/"), answer(BLOCK))
            .await;
        assert_row(
            "pipeline: Cogetel blockpage via DNS",
            &m,
            exp(I, Dns, F, Blocked, Some("dns"), Some("dns.sinkhole")),
        )
        .await;
        let v = m.test_keys.x_verdict.unwrap();
        assert_eq!(
            v.confidence.as_deref(),
            Some("confirmed"),
            "{:?}",
            v.evidence
        );
        assert_eq!(v.fingerprints, vec!["gw.kh_http_forbidden".to_string()]);
        assert_eq!(v.nig_article6.as_deref(), Some("block"));
    }

    #[tokio::test]
    async fn pipeline_tls_mitm_via_dns() {
        let w = world(answer(SITE)).await;
        let good = w.ca.issue(&[HOST]);
        let mitm = ca::self_signed(&[HOST]);
        let port = twins(
            fixed(page("Phnom Penh Daily News", ARTICLE)),
            fixed(page("Phnom Penh Daily News", ARTICLE)),
            Some((&good, &mitm)),
        )
        .await;
        let url = format!("https://{HOST}:{port}/");

        let m = w.run(&url, answer(SITE)).await;
        assert_row(
            "pipeline: https success",
            &m,
            exp(C, No, T, Accessible, None, None),
        )
        .await;

        let m = w.run(&url, answer(BLOCK)).await;
        assert_row(
            "pipeline: TLS interception via DNS",
            &m,
            exp(I, Dns, F, Blocked, Some("dns"), Some("dns.sinkhole")),
        )
        .await;
        let v = m.test_keys.x_verdict.unwrap();
        assert_eq!(
            v.confidence.as_deref(),
            Some("confirmed"),
            "{:?}",
            v.evidence
        );
        assert!(
            v.evidence
                .iter()
                .any(|e| e.contains("ssl_unknown_authority")),
            "{:?}",
            v.evidence
        );
    }

    #[tokio::test]
    async fn pipeline_traps_down_everywhere() {
        // Nothing listens on the port at either address.
        let port = {
            let l = std::net::TcpListener::bind((SITE, 0)).unwrap();
            l.local_addr().unwrap().port()
        };
        let w = world(answer(SITE)).await;
        let m = w.run(&format!("http://{HOST}:{port}/"), answer(SITE)).await;
        assert_row(
            "pipeline: site down everywhere",
            &m,
            exp(C, No, F, Down, None, None),
        )
        .await;

        let w = world(nxdomain()).await;
        let m = w.run(&format!("http://{HOST}:{port}/"), nxdomain()).await;
        assert_row(
            "pipeline: NXDOMAIN everywhere",
            &m,
            exp(C, No, F, Down, None, None),
        )
        .await;
    }

    #[tokio::test]
    async fn pipeline_traps_dynamic_content_and_https_redirect() {
        let w = world(answer(SITE)).await;
        // Every request gets another id, time and ad block.
        let n = Arc::new(AtomicUsize::new(0));
        let dynamic = {
            let n = Arc::clone(&n);
            Behaviour::Handle(Arc::new(move |_r: &SeenRequest| {
                let k = n.fetch_add(1, Ordering::SeqCst);
                let extra = "related story ".repeat(k * 7 % 13);
                page(
                    "Phnom Penh Daily News",
                    &format!("request-id {k:08x}; updated 10:{k:02} {ARTICLE} {extra}"),
                )
            }))
        };
        let port = twins(dynamic, fixed(fhttp::blockpage("Blocked")), None).await;
        let m = w.run(&format!("http://{HOST}:{port}/"), answer(SITE)).await;
        assert_row(
            "pipeline: dynamic content",
            &m,
            exp(C, No, T, Accessible, None, None),
        )
        .await;
        assert!(
            n.load(Ordering::SeqCst) >= 2,
            "the probe and the control both fetched"
        );

        // http://news.example:P1/ -> https://news.example:P2/
        let cert = w.ca.issue(&[HOST]);
        let https_port = twins(
            fixed(page("Phnom Penh Daily News", ARTICLE)),
            fixed(page("Phnom Penh Daily News", ARTICLE)),
            Some((&cert, &cert)),
        )
        .await;
        let target = format!("https://{HOST}:{https_port}/");
        let http_port = twins(
            fixed(response(
                301,
                "Moved",
                &[("Location", target.as_str())],
                b"",
            )),
            fixed(fhttp::blockpage("Blocked")),
            None,
        )
        .await;
        let m = w
            .run(&format!("http://{HOST}:{http_port}/"), answer(SITE))
            .await;
        assert_row(
            "pipeline: http to https redirect",
            &m,
            exp(C, No, T, Accessible, None, None),
        )
        .await;
        assert_eq!(m.test_keys.requests.len(), 2);
        let _: SocketAddr = m.test_keys.requests[0].address.parse().unwrap();
    }

    mod real_pages;
}

/// Issue 16: a system lookup that never ran because of the probe's own
/// limit (`x_probe_resource_limit`) is no DNS failure: the page fetched over
/// the UDP resolver's address is `accessible`, and the verdict says the
/// lookup did not run. Without any other resolver it is never `blocked`.
#[test]
fn our_own_lookup_limit_is_never_a_dns_verdict() {
    let rows = vec![
        (
            "system lookup skipped by our limit, UDP and page fine",
            url(U)
                .sys_fail("x_probe_resource_limit")
                .udp("8.8.8.8:53", &[SITE])
                .tcp(EP80, "")
                .page(U, EP80, "Phnom Penh Daily News", "x".repeat(5000).as_str())
                .control(
                    ctl(&[SITE])
                        .tcp(EP80, true)
                        .page("Phnom Penh Daily News", 5100),
                )
                .run(),
            exp(C, No, T, Accessible, None, None),
        ),
        (
            "control: a real system timeout with the same data is still blocked",
            url(U)
                .sys_fail("generic_timeout_error")
                .control(ctl(&[SITE]).page("News", 5000))
                .run(),
            exp(I, Dns, F, Blocked, Some("dns"), Some("dns.timeout")),
        ),
    ];
    let v = rows[0].1.test_keys.x_verdict.clone().unwrap();
    run_table(rows);
    assert!(
        v.evidence
            .iter()
            .any(|e| e.contains("x_probe_resource_limit")),
        "{:?}",
        v.evidence
    );
    // Only the skipped lookup (with or without it as the experiment's
    // failure): nothing measured the name, so no blocking verdict at all.
    for with_http_failure in [false, true] {
        let mut m = url(U).sys_fail("x_probe_resource_limit");
        if with_http_failure {
            m = m.http_failure("x_probe_resource_limit");
        }
        let m = m.control(ctl(&[SITE]).page("News", 5000)).run();
        let v = m.test_keys.x_verdict.clone().unwrap();
        assert_ne!(v.status, Blocked, "{v:?}");
        assert!(
            matches!(m.test_keys.blocking, Undecided | No),
            "{:?} {v:?}",
            m.test_keys.blocking
        );
    }
}

/// Issue 23: a lost datagram is not a block.
#[test]
fn a_single_silence_contradicted_by_another_resolver_is_not_a_block() {
    let tries = |mut m: M, n: u32| {
        for q in &mut m.m.test_keys.queries {
            if q.engine == "getaddrinfo" {
                q.x_attempts = n;
            }
        }
        m
    };
    let lossy_on = |n: u32, line: f64| {
        tries(url(US).sys_fail("generic_timeout_error"), n)
            .line_loss(line)
            .udp("198.51.100.53:53", &[SITE])
            .tcp(EP443, "")
            .tls(EP443, "")
            .page(US, EP443, "Phnom Penh Daily News", "body")
            .control(
                ctl(&[SITE])
                    .tcp(EP443, true)
                    .tls(EP443, "")
                    .page("Phnom Penh Daily News", 5100),
            )
            .run()
    };
    let lossy = |n: u32| lossy_on(n, 0.0);
    // One silent try; the UDP resolver answered like the control and the
    // page loaded over its address: accessible, and the evidence says why.
    let v = lossy(1).test_keys.x_verdict.unwrap();
    assert_eq!(v.status, VerdictStatus::Accessible, "{:?}", v.evidence);
    assert!(
        v.evidence.iter().any(|e| e.contains("contradicted")),
        "{:?}",
        v.evidence
    );
    // Silent on a few tries, still contradicted: loss can do that too.
    let few = gatewatch::analysis::lossy::PERSISTENT_TRIES - 1;
    let v = lossy(few).test_keys.x_verdict.unwrap();
    assert_eq!(v.status, VerdictStatus::Accessible, "{:?}", v.evidence);
    assert!(
        v.evidence.iter().any(|e| e.contains("too few to tell")),
        "{:?}",
        v.evidence
    );
    // Every one of enough tries silent: persistent, `likely`, never
    // confirmed.
    let n = gatewatch::analysis::lossy::PERSISTENT_TRIES;
    let v = lossy(n).test_keys.x_verdict.unwrap();
    assert_eq!(v.status, VerdictStatus::Blocked);
    assert_eq!(v.mechanism.as_deref(), Some("dns.timeout"));
    assert_eq!(v.confidence.as_deref(), Some("likely"));
    assert!(
        v.evidence[0].contains(&format!("on each of its {n} tries")),
        "{:?}",
        v.evidence
    );
    // The same on a line where 30 % of the steps needed a retry: even
    // repeated silences can be loss.
    let v = lossy_on(n, 0.3).test_keys.x_verdict.unwrap();
    assert_eq!(v.status, VerdictStatus::Blocked);
    assert_eq!(v.confidence.as_deref(), Some("possible"));
    assert!(
        v.evidence
            .iter()
            .any(|e| e.contains("30 % of this run's network steps")),
        "{:?}",
        v.evidence
    );
    // One silent try and nothing else to compare: at most possible.
    let m = url(U)
        .sys_fail("generic_timeout_error")
        .control(ctl(&[SITE]).page("News", 5000))
        .run();
    let v = m.test_keys.x_verdict.unwrap();
    assert_eq!(v.mechanism.as_deref(), Some("dns.timeout"));
    assert_eq!(v.confidence.as_deref(), Some("possible"));
    // An answer (NXDOMAIN) is not what loss makes: unchanged.
    let m = url(U)
        .sys_fail("dns_nxdomain_error")
        .udp("198.51.100.53:53", &[SITE])
        .control(ctl(&[SITE]).page("News", 5000))
        .run();
    let v = m.test_keys.x_verdict.unwrap();
    assert_eq!(v.confidence.as_deref(), Some("confirmed"));
}

// ---------------------------------------------------------------- IPv6 ----

const V6: &str = "2001:db8::7";
const EP6: &str = "[2001:db8::7]:443";

/// A measurement builder that also treats the IPv6 documentation prefix as
/// public.
fn url6(u: &str) -> M {
    let mut b = url(u);
    b.ctx.treat_as_public.push("2001:db8::/32".parse().unwrap());
    b
}

#[test]
fn no_ipv6_route_at_the_probe_is_never_a_block() {
    use Blocking::*;
    use VerdictStatus::*;
    let v6_only = url6(US)
        .sys(&[V6])
        .tcp(EP6, "network_unreachable")
        .http_failure("network_unreachable")
        .control(ctl(&[V6]).tcp(EP6, true).tls(EP6, "").page("News", 5000))
        .run();
    let dual = url6(US)
        .sys(&[SITE, V6])
        .tcp(EP443, "")
        .tcp(EP6, "network_unreachable")
        .tls(EP443, "")
        .page(US, EP443, "News", "body")
        .control(
            ctl(&[SITE, V6])
                .tcp(EP443, true)
                .tcp(EP6, true)
                .tls(EP443, "")
                .tls(EP6, "")
                .page("News", 5000),
        )
        .run();
    // An IPv4 host unreachable is still the censor's ICMP (the twin).
    let v4_icmp = url6(US)
        .sys(&[SITE])
        .tcp(EP443, "host_unreachable")
        .http_failure("host_unreachable")
        .control(
            ctl(&[SITE])
                .tcp(EP443, true)
                .tls(EP443, "")
                .page("News", 5000),
        )
        .run();
    for (_, m) in [("v6 only", &v6_only), ("dual", &dual)] {
        assert_eq!(m.test_keys.x_blocking_flags.unwrap() & 2, 0);
    }
    run_table(vec![
        (
            "IPv6-only site, probe without an IPv6 route",
            v6_only,
            exp(C, Undecided, None, Inconclusive, None, None),
        ),
        (
            "dual-stack site, IPv4 fine, IPv6 unreachable",
            dual,
            exp(C, No, T, Accessible, None, None),
        ),
        (
            "IPv4 ICMP host unreachable (twin)",
            v4_icmp,
            exp(
                C,
                TcpIp,
                F,
                Blocked,
                Some("tcp_ip"),
                Some("tcp.unreachable"),
            ),
        ),
    ]);
}

#[test]
fn blocking_of_one_family_is_reported_beside_an_accessible_site() {
    let v6_blocked = url6(US)
        .sys(&[SITE, V6])
        .tcp(EP443, "")
        .tcp(EP6, "generic_timeout_error")
        .tls(EP443, "")
        .page(US, EP443, "News", "body")
        .control(
            ctl(&[SITE, V6])
                .tcp(EP443, true)
                .tcp(EP6, true)
                .tls(EP443, "")
                .tls(EP6, "")
                .page("News", 5000),
        )
        .run();
    let v = v6_blocked.test_keys.x_verdict.as_ref().unwrap();
    assert_eq!(v.status, VerdictStatus::Accessible);
    assert!(
        v.evidence
            .iter()
            .any(|e| e.contains("over IPv6 only") && e.contains("[2001:db8::7]:443")),
        "{:?}",
        v.evidence
    );
    // No IPv6 route: not a finding.
    let no_route = url6(US)
        .sys(&[SITE, V6])
        .tcp(EP443, "")
        .tcp(EP6, "network_unreachable")
        .tls(EP443, "")
        .page(US, EP443, "News", "body")
        .control(
            ctl(&[SITE, V6])
                .tcp(EP443, true)
                .tcp(EP6, true)
                .tls(EP443, "")
                .page("News", 5000),
        )
        .run();
    let v = no_route.test_keys.x_verdict.as_ref().unwrap();
    assert_eq!(v.status, VerdictStatus::Accessible);
    assert!(
        !v.evidence.iter().any(|e| e.contains("only")),
        "{:?}",
        v.evidence
    );
}
