//! THE place to add a censorship mechanism or a trap: one row in
//! [`SCENARIOS`] (a URL, how the genuine site behaves, what the censor does,
//! the verdict we expect), and — only for a new kind of interference — one
//! [`Censor`] variant with its rules in [`Censor::plan`] right below it.
//!
//! Every scenario gets its own host name and its own site address, so rules
//! never overlap. The censor is the second router on the probe's path
//! (probe → r1 → censor → internet); the control sits on the internet side.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::net::Ipv4Addr;

use super::topology::{addr, CENSOR_DOWN_IF};

/// One situation the probe must classify.
#[derive(Clone, Copy, Debug)]
pub struct Scenario {
    /// Short unique name; the host is `<name>.example`.
    pub name: &'static str,
    /// `http` or `https`: the URL is `<scheme>://<name>.example/`.
    pub scheme: &'static str,
    /// How the genuine site behaves (seen from the control and from an
    /// uncensored path).
    pub site: Site,
    /// What the censor does to the probe's traffic for this site.
    pub censor: Censor,
    /// What the probe's measurement must say.
    pub expect: Expect,
}

/// The genuine site, in the internet namespace.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Site {
    /// A plain page on :80 and :443 (valid certificate from the lab CA).
    Static,
    /// A page whose text changes on every request (times, ids, cookies).
    Dynamic,
    /// A page whose edition depends on the client's address.
    ClientDependent,
    /// :80 answers 301 to `https://<host>/`; :443 serves the page.
    RedirectToHttps,
    /// Answers after this many milliseconds, to everyone.
    Slow(u64),
    /// A page of this many bytes (for throttling).
    Big(usize),
    /// The name resolves, but nothing listens on the address (refused
    /// everywhere).
    Down,
    /// The name does not exist anywhere (NXDOMAIN from every resolver).
    NoSuchName,
    /// A small page (about 680 bytes), like a small site's front page.
    Small,
    /// A page where a block of 40 % of the words changes on every request.
    Dynamic40,
    /// :80 answers 301 to `http://<name>-next.example/`, a second name of
    /// the same site (same address), which serves the page.
    RedirectToNext,
}

/// The censor's action, made by real tools in the censor namespace.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Censor {
    /// Nothing.
    None,
    /// The ISP resolver answers NXDOMAIN.
    DnsNxdomain,
    /// The ISP resolver answers 127.0.0.1.
    DnsLocalhost,
    /// The ISP resolver answers a private address (10.10.10.1, as seen in
    /// Cambodia in 2022).
    DnsBogon,
    /// The ISP resolver answers the censor's blockpage server address.
    DnsBlockpageIp,
    /// The ISP resolver never answers for this name.
    DnsSilent,
    /// An on-path injector forges a reply to every query for the name that
    /// crosses the censor (to the public resolver, or to any address, even
    /// one that runs no DNS server); a genuine reply still arrives, later.
    DnsInjection,
    /// nft drops the SYNs to the site's address (ports 80 and 443).
    SynDrop,
    /// nft answers the SYNs with a RST.
    SynRst,
    /// nft answers the SYNs with ICMP host-unreachable.
    IcmpUnreachable,
    /// A RST when a TLS ClientHello carries the site's name (iptables
    /// string match on :443 marks the packet; nft rejects it).
    SniRst,
    /// The ClientHello carrying the site's name is dropped (then every
    /// retransmission).
    SniDrop,
    /// :443 of the site is redirected to the censor's TLS box, whose
    /// certificate comes from an untrusted CA.
    TlsMitm,
    /// A RST when an HTTP request carries the site's name (:80).
    HostRst,
    /// :80 of the site is redirected to the censor's blockpage server.
    Blockpage,
    /// :80 of the site is redirected to a box that reads the request and
    /// closes the connection (EOF).
    EofAfterRequest,
    /// :80 of the site is redirected to a box answering a short 200 page
    /// titled "Access Denied - Website Blocked", from the same server
    /// software as the sites (a transparent proxy on the site's address).
    LookalikeBlockpage,
    /// :80 of the site is redirected to a box answering a short 200 notice
    /// with no blocking words and no fingerprint: only clustering (the same
    /// page for unrelated sites) tells it is a blockpage.
    NoticePage,
    /// The ISP resolver answers NXDOMAIN for `<name>-next.example`, the
    /// name the site redirects to (not for the input's name).
    DnsNxdomainNext,
    /// The ISP resolver answers the censor's proxy address
    /// ([`addr::PROXY`], another network), where a transparent proxy
    /// splices :80 and :443 to the genuine site: TLS passes through, the
    /// site's own certificate verifies.
    DnsDivert,
    /// Not censorship: the ISP resolver answers another node of the site
    /// itself ([`second_node`], the site's own network).
    DnsOtherNode,
    /// The site's traffic towards the probe is shaped to this rate (tc htb).
    Throttle {
        /// Rate in kbit/s.
        kbit: u32,
    },
}

/// The expected result for one URL.
#[derive(Clone, Copy, Debug)]
pub struct Expect {
    /// `x_verdict.status`.
    pub status: &'static str,
    /// `x_verdict.layer` (`None` = null).
    pub layer: Option<&'static str>,
    /// The classic `blocking`: `false`, `null`, or the layer string.
    pub blocking: &'static str,
    /// `x_verdict.mechanism` (`None` = null).
    pub mechanism: Option<&'static str>,
}

/// Blocked at `layer` by `mechanism`; OONI's classic label says `blocking`.
const fn blocked(layer: &'static str, blocking: &'static str, mechanism: &'static str) -> Expect {
    Expect {
        status: "blocked",
        layer: Some(layer),
        blocking,
        mechanism: Some(mechanism),
    }
}

/// Loads as from the control.
const OPEN: Expect = Expect {
    status: "accessible",
    layer: None,
    blocking: "false",
    mechanism: None,
};
/// Fails from the control too: not censorship.
const DOWN: Expect = Expect {
    status: "down",
    layer: None,
    blocking: "false",
    mechanism: None,
};
/// Loads, far slower than from the control.
const SLOWED: Expect = Expect {
    status: "throttled",
    layer: Some("throttling"),
    blocking: "false",
    mechanism: Some("throttling"),
};

/// The lab's test list. One row per mechanism and per trap.
#[rustfmt::skip]
pub const SCENARIOS: &[Scenario] = &[
    row("clean", "https", Site::Static, Censor::None, OPEN),
    row("clean-http", "http", Site::Static, Censor::None, OPEN),
    // A large uncensored page: early in the list, so the run has a baseline
    // of the line's own throughput when the throttled row finishes.
    row("big", "https", Site::Big(160 * 1024), Censor::None, OPEN),
    // DNS, by the ISP resolver the probe's system resolver uses.
    row("dns-nxdomain", "http", Site::Static, Censor::DnsNxdomain, blocked("dns", "dns", "dns.nxdomain")),
    row("dns-localhost", "http", Site::Static, Censor::DnsLocalhost, blocked("dns", "dns", "dns.localhost")),
    row("dns-bogon", "http", Site::Static, Censor::DnsBogon, blocked("dns", "dns", "dns.bogon")),
    row("dns-blockpage-ip", "http", Site::Static, Censor::DnsBlockpageIp, blocked("dns", "dns", "dns.sinkhole")),
    row("dns-silent", "http", Site::Static, Censor::DnsSilent, blocked("dns", "dns", "dns.timeout")),
    // DNS, on the path to the public resolver (--resolver). The system
    // resolver is clean, so OONI's classic label (system resolver only)
    // sees nothing; our verdict does.
    row("dns-injected", "http", Site::Static, Censor::DnsInjection, blocked("dns", "false", "dns.injected")),
    // TCP/IP.
    row("tcp-syn-drop", "https", Site::Static, Censor::SynDrop, blocked("tcp_ip", "tcp_ip", "tcp.timeout")),
    row("tcp-syn-rst", "https", Site::Static, Censor::SynRst, blocked("tcp_ip", "tcp_ip", "tcp.refused")),
    row("tcp-icmp-unreach", "https", Site::Static, Censor::IcmpUnreachable, blocked("tcp_ip", "tcp_ip", "tcp.unreachable")),
    // TLS.
    row("tls-sni-rst", "https", Site::Static, Censor::SniRst, blocked("tls", "http-failure", "tls.reset")),
    row("tls-sni-drop", "https", Site::Static, Censor::SniDrop, blocked("tls", "http-failure", "tls.timeout")),
    row("tls-mitm", "https", Site::Static, Censor::TlsMitm, blocked("tls", "http-failure", "tls.mitm")),
    // HTTP.
    row("http-host-rst", "http", Site::Static, Censor::HostRst, blocked("http", "http-failure", "http.reset")),
    row("http-blockpage", "http", Site::Static, Censor::Blockpage, blocked("http", "http-diff", "http.blockpage")),
    row("http-eof", "http", Site::Static, Censor::EofAfterRequest, blocked("http", "http-failure", "http.eof")),
    // Issue 13: a blockpage that looks like the site (200, same server,
    // 490 vs 680 bytes), and NXDOMAIN from the ISP resolver for a redirect
    // target only (the public resolver's answer lets the fetch go on).
    // OONI's classic rule calls the look-alike page the same page (same
    // status, lengths within 0.7): its `blocking` stays false.
    row("http-lookalike", "http", Site::Small, Censor::LookalikeBlockpage, blocked("http", "false", "http.blockpage")),
    row("dns-redirect-hop", "http", Site::RedirectToNext, Censor::DnsNxdomainNext, blocked("dns", "false", "dns.nxdomain")),
    // A name diverted to a box that passes the site through: accessible
    // (`x_verdict.interference: ["dns.diverted"]` once ASN data tells the
    // networks apart: `lab::e2e::a_diverted_name_is_reported_with_asn_data`);
    // its twin, another node of the site's own network, has no flag.
    row("dns-diverted", "https", Site::Static, Censor::DnsDivert, OPEN),
    row("dns-other-node", "https", Site::Static, Censor::DnsOtherNode, OPEN),
    // Degradation: 160 KiB at 512 kbit/s (the verdict's threshold is < 1/5
    // of the control's rate, < 1/5 of the line baseline (the `big` row) and
    // < 2 Mbit/s on >= 64 KiB).
    row("throttled", "https", Site::Big(160 * 1024), Censor::Throttle { kbit: 512 }, SLOWED),
    // Traps: none of these is censorship.
    row("down-everywhere", "https", Site::Down, Censor::None, DOWN),
    row("nxdomain-everywhere", "https", Site::NoSuchName, Censor::None, DOWN),
    row("dynamic", "https", Site::Dynamic, Censor::None, OPEN),
    row("client-dependent", "https", Site::ClientDependent, Censor::None, OPEN),
    row("http-to-https", "http", Site::RedirectToHttps, Censor::None, OPEN),
    row("slow", "https", Site::Slow(1500), Censor::None, OPEN),
    row("small-site", "http", Site::Small, Censor::None, OPEN),
    row("dynamic-40", "http", Site::Dynamic40, Censor::None, OPEN),
    row("redirect-hop-clean", "http", Site::RedirectToNext, Censor::None, OPEN),
];

const fn row(
    name: &'static str,
    scheme: &'static str,
    site: Site,
    censor: Censor,
    expect: Expect,
) -> Scenario {
    Scenario {
        name,
        scheme,
        site,
        censor,
        expect,
    }
}

impl Scenario {
    /// `<name>.example`.
    pub fn host(&self) -> String {
        format!("{}.example", self.name)
    }

    /// `<scheme>://<name>.example/`.
    pub fn url(&self) -> String {
        format!("{}://{}/", self.scheme, self.host())
    }
}

/// The second name of a [`Site::RedirectToNext`] site:
/// `<name>-next.example` for `<name>.example`.
pub fn next_host(host: &str) -> String {
    format!("{}-next.example", host.trim_end_matches(".example"))
}

/// A second address of the site at `ip`, in the sites' own network
/// (203.0.113.128/26): another node of the same site.
pub fn second_node(ip: Ipv4Addr) -> Ipv4Addr {
    let o = ip.octets();
    Ipv4Addr::new(o[0], o[1], o[2], 128 + (o[3] - 10) % 64)
}

/// The genuine address of scenario number `i` (each has its own).
pub fn site_ip(i: usize) -> Ipv4Addr {
    Ipv4Addr::new(
        203,
        0,
        113,
        10 + u8::try_from(i).expect("fewer than 200 scenarios"),
    )
}

/// The IPv6 address of scenario number `i` in a dual-stack world
/// (2001:db8:203::/48, the same host number as [`site_ip`]).
pub fn site_ip6(i: usize) -> std::net::Ipv6Addr {
    let host = u16::from(site_ip(i).octets()[3]);
    std::net::Ipv6Addr::new(0x2001, 0xdb8, 0x203, 0, 0, 0, 0, host)
}

/// What an ISP resolver says instead of the truth.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Lie {
    /// NXDOMAIN.
    Nxdomain,
    /// This A record.
    Answer(Ipv4Addr),
    /// No answer at all.
    Silent,
}

/// Packet mark for "answer with a RST" (set by a string match).
pub const MARK_RST: u32 = 1;
/// Packet mark for "drop" (set by a string match).
pub const MARK_DROP: u32 = 2;

/// Everything the censor namespace must be configured with.
#[derive(Debug, Default)]
pub struct CensorPlan {
    /// Filter rules for packets arriving from the probe's side, applied on
    /// arrival (prerouting), before the kernel's TTL check: like a DPI box,
    /// the censor acts on a packet that reaches it with TTL 1, so a
    /// TTL-limited trace sees the interference at the censor's hop.
    pub nft_inspect: Vec<String>,
    /// Redirections (nat prerouting) to the censor's boxes.
    pub nft_redirect: Vec<String>,
    /// `iptables` argument lists: string matches nft cannot do; they mark
    /// packets ([`MARK_RST`], [`MARK_DROP`]) and `nft_inspect` acts on marks.
    pub iptables: Vec<Vec<String>>,
    /// `tc` argument lists.
    pub tc: Vec<Vec<String>>,
    /// The ISP resolver's lies, per host.
    pub lies: BTreeMap<String, Lie>,
    /// Hosts the on-path injector forges answers for.
    pub inject: BTreeSet<String>,
    /// The site the censor's transparent proxy ([`addr::PROXY`]) splices
    /// to.
    pub divert_to: Option<Ipv4Addr>,
}

impl Censor {
    /// Adds this action's configuration for `host` at `ip`.
    pub fn plan(&self, host: &str, ip: Ipv4Addr, p: &mut CensorPlan) {
        let web = "tcp dport { 80, 443 }";
        let s = |v: &[&str]| v.iter().map(|x| x.to_string()).collect::<Vec<_>>();
        match *self {
            Censor::None => {}
            Censor::DnsNxdomain => {
                p.lies.insert(host.into(), Lie::Nxdomain);
            }
            Censor::DnsLocalhost => {
                p.lies.insert(host.into(), Lie::Answer(Ipv4Addr::LOCALHOST));
            }
            Censor::DnsBogon => {
                p.lies
                    .insert(host.into(), Lie::Answer(Ipv4Addr::new(10, 10, 10, 1)));
            }
            Censor::DnsBlockpageIp => {
                p.lies.insert(host.into(), Lie::Answer(addr::SINKHOLE));
            }
            Censor::DnsSilent => {
                p.lies.insert(host.into(), Lie::Silent);
            }
            Censor::DnsInjection => {
                p.inject.insert(host.into());
            }
            Censor::SynDrop => p.nft_inspect.push(format!("ip daddr {ip} {web} drop")),
            Censor::SynRst => p
                .nft_inspect
                .push(format!("ip daddr {ip} {web} reject with tcp reset")),
            Censor::IcmpUnreachable => p.nft_inspect.push(format!(
                "ip daddr {ip} {web} reject with icmp type host-unreachable"
            )),
            Censor::SniRst | Censor::SniDrop | Censor::HostRst => {
                let port = if *self == Censor::HostRst {
                    "80"
                } else {
                    "443"
                };
                let mark = if *self == Censor::SniDrop {
                    MARK_DROP
                } else {
                    MARK_RST
                };
                // Keyed on the name only (any address), as SNI/Host filters are.
                let mut args = s(&["-t", "mangle", "-A", "PREROUTING", "-i", CENSOR_DOWN_IF]);
                args.extend(s(&[
                    "-p", "tcp", "--dport", port, "-m", "string", "--string", host,
                ]));
                args.extend(s(&[
                    "--algo",
                    "bm",
                    "-j",
                    "MARK",
                    "--set-mark",
                    &mark.to_string(),
                ]));
                p.iptables.push(args);
            }
            Censor::TlsMitm => p.nft_redirect.push(format!(
                "ip daddr {ip} tcp dport 443 redirect to :{}",
                addr::MITM_PORT
            )),
            Censor::Blockpage => p.nft_redirect.push(format!(
                "ip daddr {ip} tcp dport 80 redirect to :{}",
                addr::BLOCKPAGE_PORT
            )),
            Censor::LookalikeBlockpage => p.nft_redirect.push(format!(
                "ip daddr {ip} tcp dport 80 redirect to :{}",
                addr::LOOKALIKE_PORT
            )),
            Censor::NoticePage => p.nft_redirect.push(format!(
                "ip daddr {ip} tcp dport 80 redirect to :{}",
                addr::NOTICE_PORT
            )),
            Censor::DnsNxdomainNext => {
                p.lies.insert(next_host(host), Lie::Nxdomain);
            }
            Censor::DnsDivert => {
                assert!(p.divert_to.is_none(), "one DnsDivert row per lab");
                p.lies.insert(host.into(), Lie::Answer(addr::PROXY));
                p.divert_to = Some(ip);
            }
            Censor::DnsOtherNode => {
                p.lies.insert(host.into(), Lie::Answer(second_node(ip)));
            }
            Censor::EofAfterRequest => p.nft_redirect.push(format!(
                "ip daddr {ip} tcp dport 80 redirect to :{}",
                addr::EOF_PORT
            )),
            Censor::Throttle { kbit } => {
                let dev = CENSOR_DOWN_IF;
                if p.tc.is_empty() {
                    // Unclassified traffic bypasses htb (no default class).
                    p.tc.push(s(&[
                        "qdisc", "add", "dev", dev, "root", "handle", "1:", "htb",
                    ]));
                }
                let class = format!("1:{}", 10 + p.tc.len());
                let rate = format!("{kbit}kbit");
                p.tc.push(s(&[
                    "class", "add", "dev", dev, "parent", "1:", "classid", &class, "htb", "rate",
                    &rate, "ceil", &rate,
                ]));
                let src = format!("{ip}/32");
                p.tc.push(s(&[
                    "filter", "add", "dev", dev, "parent", "1:", "protocol", "ip", "prio", "1",
                    "u32", "match", "ip", "src", &src, "flowid", &class,
                ]));
            }
        }
    }
}

impl CensorPlan {
    /// The plan for a whole list of scenarios.
    pub fn for_scenarios(list: &[Scenario]) -> CensorPlan {
        let mut p = CensorPlan::default();
        for (i, sc) in list.iter().enumerate() {
            sc.censor.plan(&sc.host(), site_ip(i), &mut p);
        }
        p
    }

    /// The nftables ruleset (one table, loaded with `nft -f`).
    pub fn nft_ruleset(&self) -> String {
        let dev = CENSOR_DOWN_IF;
        let mut r = String::from("table inet gwlab_censor {\n");
        // After iptables' mangle (-150), which sets the string-match marks.
        r.push_str(
            "  chain inspect {\n    type filter hook prerouting priority -140; policy accept;\n",
        );
        let _ = writeln!(
            r,
            "    iifname \"{dev}\" meta mark {MARK_RST} reject with tcp reset"
        );
        let _ = writeln!(r, "    iifname \"{dev}\" meta mark {MARK_DROP} drop");
        for rule in &self.nft_inspect {
            let _ = writeln!(r, "    iifname \"{dev}\" {rule}");
        }
        r.push_str(
            "  }\n  chain divert {\n    type nat hook prerouting priority -100; policy accept;\n",
        );
        for rule in &self.nft_redirect {
            let _ = writeln!(r, "    iifname \"{dev}\" {rule}");
        }
        r.push_str("  }\n}\n");
        r
    }
}
