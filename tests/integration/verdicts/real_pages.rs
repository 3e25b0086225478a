//! Verdicts that hold on real pages (issue 13): a blockpage that looks like
//! the site, DNS at every redirect hop, a name diverted to a middlebox, each
//! with its not-censorship twin. Rows are constructed measurements; the
//! control's side carries the text fingerprint our control sends.
//! `cargo test --test integration real_pages -- --nocapture` prints the
//! table of outcomes.

use std::sync::Arc;

use gatewatch::analysis::cluster::{PageKey, Registry};
use gatewatch::analysis::pagetext;
use gatewatch::control::protocol::{ControlBody, ControlText};
use gatewatch::model::{Measurement, VerdictStatus};

use super::{ctl, url, Ctl, EP443, EP80, SITE, U, US};
use VerdictStatus::{Accessible, Blocked, Inconclusive};

/// The page the resp() builder makes of a title and a body.
fn html(title: &str, body: &str) -> String {
    format!("<html><head><title>{title}</title></head><body>{body}</body></html>")
}

impl Ctl {
    /// The control's page is `html`: its length, hash and text fingerprint.
    fn text(mut self, html: &str) -> Ctl {
        let t = pagetext::fingerprint(html);
        self.r.x_body_text = Some(ControlText {
            words: t.words,
            sketch: t.sketch,
            block_terms: t.block_terms,
        });
        self.r.x_body = Some(ControlBody {
            length: html.len() as i64,
            sha256: PageKey::of_body(html.as_bytes()).sha256,
            prefix: html.chars().take(256).collect(),
        });
        self
    }
}

/// `n` deterministic words (xorshift), one in three from a pool of 60
/// common words.
fn words(seed: u64, n: usize) -> Vec<String> {
    let mut s = seed.max(1);
    (0..n)
        .map(|i| {
            s ^= s << 13;
            s ^= s >> 7;
            s ^= s << 17;
            if i % 3 == 0 {
                format!("common{}", s % 60)
            } else {
                format!("word{}", s % 40_000)
            }
        })
        .collect()
}

/// The front page of a news site (`n` words).
fn front_page(n: usize) -> String {
    format!("<p>{}</p>", words(7, n).join(" "))
}

/// The same page with a block of 40 % of its words replaced (a new set of
/// headlines, ads and ids on every request).
fn front_page_changed(n: usize, seed: u64) -> String {
    let mut w = words(7, n);
    let fresh = words(seed, n);
    let k = n * 2 / 5;
    let start = (seed as usize * 37) % (n - k);
    w[start..start + k].clone_from_slice(&fresh[..k]);
    format!("<p>{}</p>", w.join(" "))
}

/// A Khmer edition: about 250 words of Khmer text.
fn khmer_edition() -> String {
    let syl = [
        "ព័ត៌មាន",
        "ថ្ងៃនេះ",
        "រដ្ឋាភិបាល",
        "សេដ្ឋកិច្ច",
        "កីឡា",
        "វប្បធម៌",
        "ខេត្ត",
        "ភ្នំពេញ",
        "អ្នកកាសែត",
        "សភា",
    ];
    let w = words(3, 400);
    let text: Vec<String> = w
        .iter()
        .map(|x| syl[x.len() % syl.len()].to_string() + &x[x.len() - 1..])
        .collect();
    format!("<p>{}</p>", text.join(" "))
}

struct Row {
    name: &'static str,
    m: Measurement,
    status: VerdictStatus,
    mechanism: Option<&'static str>,
    interference: &'static [&'static str],
    cluster_sites: Option<u32>,
    /// A phrase the evidence must contain.
    says: &'static str,
}

fn row(
    name: &'static str,
    m: Measurement,
    status: VerdictStatus,
    mechanism: Option<&'static str>,
    says: &'static str,
) -> Row {
    Row {
        name,
        m,
        status,
        mechanism,
        interference: &[],
        cluster_sites: None,
        says,
    }
}

fn run_rows(rows: Vec<Row>) {
    let mut bad = Vec::new();
    println!("| row | status | mechanism | interference | cluster |");
    println!("|---|---|---|---|---|");
    for r in &rows {
        let v = r.m.test_keys.x_verdict.clone().unwrap_or_default();
        let cluster = v.cluster.as_ref().map(|c| c.sites);
        println!(
            "| {} | {} | {} | {} | {} |",
            r.name,
            v.status.as_str(),
            v.mechanism.as_deref().unwrap_or("-"),
            v.interference.join(","),
            cluster.map(|n| format!("{n} sites")).unwrap_or_default()
        );
        let got = (
            v.status,
            v.mechanism.as_deref(),
            v.interference
                .iter()
                .map(String::as_str)
                .collect::<Vec<_>>(),
            cluster,
        );
        let want = (
            r.status,
            r.mechanism,
            r.interference.to_vec(),
            r.cluster_sites,
        );
        let text = v.evidence.join(" | ");
        if got != want || !text.contains(r.says) {
            bad.push(format!(
                "{}:\n   want {want:?}, evidence with {:?}\n   got  {got:?}\n   evidence {text}",
                r.name, r.says
            ));
        }
    }
    assert!(bad.is_empty(), "{}", bad.join("\n"));
}

// ------------------------------------------------------------- pages ----

/// The transparent proxy: a 200 from nginx on the site's own
/// address, titled "Access Denied - Website Blocked".
fn lookalike_blockpage() -> Measurement {
    let site = html("Phnom Penh Daily News", &front_page(60));
    url(U)
        .sys(&[SITE])
        .tcp(EP80, "")
        .resp(
            U,
            EP80,
            200,
            "Access Denied - Website Blocked",
            "<h1>Access Denied</h1><p>This website has been blocked.</p>",
            &[("Server", "nginx")],
        )
        .control(
            ctl(&[SITE])
                .tcp(EP80, true)
                .http(200, "Phnom Penh Daily News", 682, &[("Server", "nginx")])
                .text(&site),
        )
        .run()
}

/// A cleartext page for `u` from EP80, the control's page being `ctl_html`.
fn page_vs(u: &str, title: &str, body: &str, ctl_title: &str, ctl_html: &str) -> Measurement {
    let host = url::Url::parse(u).unwrap().host_str().unwrap().to_string();
    url(u)
        .query("getaddrinfo", "", &host, &[SITE], "")
        .tcp(EP80, "")
        .resp(u, EP80, 200, title, body, &[("Server", "nginx")])
        .control(
            ctl(&[SITE])
                .tcp(EP80, true)
                .http(
                    200,
                    ctl_title,
                    ctl_html.len() as i64,
                    &[("Server", "nginx")],
                )
                .text(ctl_html),
        )
        .run()
}

#[test]
fn blockpage_that_looks_like_the_site() {
    let site = html("Phnom Penh Daily News", &front_page(400));
    let khmer_block = "<p>គេហទំព័រនេះត្រូវបានបិទ តាមការណែនាំរបស់ក្រសួងប្រៃសណីយ៍និងទូរគមនាគមន៍</p>";
    let about_body = "<p>The ministry said the website has been blocked by order of the court. \
         Reporters asked why access denied pages appeared across the country.</p>";
    let about_blocking = html("Daily News", about_body);
    let rows = vec![
        row(
            "13.1 lookalike blockpage (200, nginx, 490 vs 682 bytes)",
            lookalike_blockpage(),
            Blocked,
            Some("http.blockpage"),
            "says \"access denied\"",
        ),
        row(
            "13.1 Khmer blockpage",
            page_vs(U, "គេហទំព័រត្រូវបានបិទ", khmer_block, "Phnom Penh Daily News", &site),
            Blocked,
            Some("http.blockpage"),
            "ត្រូវបានបិទ",
        ),
        row(
            "twin: 40% of the text changes on every request",
            page_vs(
                U,
                "Phnom Penh Daily News",
                &front_page_changed(400, 11),
                "Phnom Penh Daily News",
                &site,
            ),
            Accessible,
            None,
            "saying what the control's page says",
        ),
        row(
            "twin: 40% changed, title changed too",
            page_vs(
                U,
                "Tuesday edition",
                &front_page_changed(400, 29),
                "Phnom Penh Daily News",
                &site,
            ),
            Accessible,
            None,
            "saying what the control's page says",
        ),
        row(
            "twin: geo edition in Khmer (a full page)",
            page_vs(U, "ព័ត៌មាន ថ្ងៃនេះ", &khmer_edition(), "Phnom Penh Daily News", &site),
            Accessible,
            None,
            "full page",
        ),
        row(
            "twin: CDN variant (same title, other text)",
            page_vs(
                U,
                "Phnom Penh Daily News",
                "<p>Mobile edition: latest headlines, tap to open</p>",
                "Phnom Penh Daily News",
                &site,
            ),
            Accessible,
            None,
            "share the site's title",
        ),
        row(
            "twin: CAPTCHA/challenge page with status 200",
            page_vs(
                U,
                "Security check",
                "<p>Access denied for automated traffic. Verify you are human: solve the captcha to continue</p>",
                "Phnom Penh Daily News",
                &site,
            ),
            Accessible,
            Some("server_side"),
            "a challenge",
        ),
        row(
            "twin: the site's own article about blocking (lexicon never alone)",
            page_vs(U, "Daily News", about_body, "Daily News", &about_blocking),
            Accessible,
            None,
            "saying what the control's page says",
        ),
        row(
            "a short different page with no blocking words",
            page_vs(
                U,
                "Welcome",
                "<p>Hello visitor, come back later for the new version</p>",
                "Phnom Penh Daily News",
                &site,
            ),
            Inconclusive,
            None,
            "nothing marks the probe's page as a blockpage",
        ),
    ];
    run_rows(rows);
}

#[test]
fn one_page_for_unrelated_sites_is_a_blockpage() {
    let reg = Arc::new(Registry::new());
    let notice = |host: &str| {
        format!("<p>Notice: the content you requested at {host} is unavailable on this network right now</p>")
    };
    let clustered = |u: &str, site_html: &str, body: &str| {
        let host = url::Url::parse(u).unwrap().host_str().unwrap().to_string();
        let mut b = url(u)
            .query("getaddrinfo", "", &host, &[SITE], "")
            .tcp(EP80, "")
            .resp(u, EP80, 200, "Notice", body, &[("Server", "nginx")])
            .control(
                ctl(&[SITE])
                    .tcp(EP80, true)
                    .http(200, "Site", site_html.len() as i64, &[("Server", "nginx")])
                    .text(site_html),
            );
        b.ctx.clusters = Some(Arc::clone(&reg));
        b.run()
    };
    let a = html("A news", &format!("<p>{}</p>", words(101, 300).join(" ")));
    let b = html("B rights", &format!("<p>{}</p>", words(202, 300).join(" ")));
    let c = html("C blog", &format!("<p>{}</p>", words(303, 300).join(" ")));
    let parked = html("Parked", &format!("<p>{}</p>", words(404, 80).join(" ")));
    let mut rows = vec![
        row(
            "first site with an unknown notice page",
            clustered("http://a.example/", &a, &notice("a.example")),
            Inconclusive,
            None,
            "not served for other sites so far",
        ),
        Row {
            cluster_sites: Some(2),
            ..row(
                "second unrelated site, same page: cluster",
                clustered("http://b.example/", &b, &notice("b.example")),
                Blocked,
                Some("http.blockpage"),
                "served for 2 unrelated sites",
            )
        },
        Row {
            cluster_sites: Some(3),
            ..row(
                "third unrelated site",
                clustered("http://c.example/x", &c, &notice("c.example")),
                Blocked,
                Some("http.blockpage"),
                "served for 3 unrelated sites",
            )
        },
    ];
    // Twins: mirrors (the same control page) do not make a cluster, and two
    // sites on one CDN address, each served its own page, are accessible.
    rows.push(row(
        "twin: mirror 1 (same control page)",
        clustered(
            "http://m1.example/",
            &parked,
            "<p>Temporarily closed for stocktaking, open again on monday morning</p>",
        ),
        Inconclusive,
        None,
        "not served for other sites so far",
    ));
    rows.push(row(
        "twin: mirror 2 (same control page)",
        clustered(
            "http://m2.example/",
            &parked,
            "<p>Temporarily closed for stocktaking, open again on monday morning</p>",
        ),
        Inconclusive,
        None,
        "not served for other sites so far",
    ));
    for (u, page) in [("http://cdn-a.example/", &a), ("http://cdn-b.example/", &b)] {
        let host = url::Url::parse(u).unwrap().host_str().unwrap().to_string();
        let mut m = url(u)
            .query("getaddrinfo", "", &host, &[SITE], "")
            .tcp(EP80, "")
            .resp(u, EP80, 200, "", page, &[("Server", "cdn")])
            .control(
                ctl(&[SITE])
                    .tcp(EP80, true)
                    .http(200, "", page.len() as i64, &[("Server", "cdn")])
                    .text(page),
            );
        m.ctx.clusters = Some(Arc::clone(&reg));
        rows.push(row(
            "twin: two sites on one CDN address",
            m.run(),
            Accessible,
            None,
            "saying what the control's page says",
        ));
    }
    run_rows(rows);
    let all = reg.clusters();
    assert_eq!(all.len(), 1, "{all:?}");
    assert_eq!(all[0].hosts, vec!["a.example", "b.example", "c.example"]);
}

// ------------------------------------------------------------ DNS hops ----

const SHORT: &str = "https://short.example/abc";
const RIGHTS: &str = "https://rights.example/";
const RIGHTS_IP: &str = "203.0.113.9";
const RIGHTS_EP: &str = "203.0.113.9:443";

/// short.example answers 301 to rights.example; the system resolver says
/// `sys` for rights.example (`sys_fail` its failure), the public resolver
/// gives the genuine address and the page loads from there over TLS.
fn redirect_hop(sys: &[&str], sys_fail: &str) -> Measurement {
    redirect_hop_tries(sys, sys_fail, 1)
}

/// [`redirect_hop`] with the system lookup of rights.example tried `tries`
/// times.
fn redirect_hop_tries(sys: &[&str], sys_fail: &str, tries: u32) -> Measurement {
    let hop = |mut b: super::M, engine: &str, resolver: &str, addrs: &[&str], f: &str| {
        b = b.query(engine, resolver, "rights.example", addrs, f);
        let q = b.m.test_keys.queries.last_mut().unwrap();
        q.tags = vec!["depth=1".into()];
        if engine == "getaddrinfo" {
            q.x_attempts = tries;
        }
        b
    };
    let mut b = url(SHORT)
        .query("getaddrinfo", "", "short.example", &[SITE], "")
        .tcp(EP443, "")
        .tls_full(EP443, "short.example", "", 0.1, "aa")
        .redirect(SHORT, EP443, RIGHTS);
    b = hop(b, "getaddrinfo", "", sys, sys_fail);
    b = hop(b, "udp", "198.51.100.53:53", &[RIGHTS_IP], "");
    b.tcp(RIGHTS_EP, "")
        .tls_full(RIGHTS_EP, "rights.example", "", 0.1, "bb")
        .page(RIGHTS, RIGHTS_EP, "Rights Watch", "reports")
        .control(
            ctl(&[SITE])
                .page("Rights Watch", 5000)
                .hop(SHORT, &[SITE], 301)
                .hop(RIGHTS, &[RIGHTS_IP], 200),
        )
        .run()
}

#[test]
fn dns_at_every_redirect_hop() {
    let rows = vec![
        row(
            "13.2 system resolver NXDOMAIN for the redirect target",
            redirect_hop(&[], "dns_nxdomain_error"),
            Blocked,
            Some("dns.nxdomain"),
            "rights.example, a redirect target",
        ),
        row(
            "issue 23: a silence for the redirect target on one try, the other resolver answered",
            redirect_hop_tries(&[], "generic_timeout_error", 1),
            Accessible,
            None,
            "over TLS verified for the name",
        ),
        row(
            "issue 23: a silence for the redirect target on every one of many tries",
            redirect_hop_tries(
                &[],
                "generic_timeout_error",
                gatewatch::analysis::lossy::PERSISTENT_TRIES,
            ),
            Blocked,
            Some("dns.timeout"),
            "for rights.example, a redirect target",
        ),
        row(
            "13.2 system resolver answers 127.0.0.1 for the redirect target",
            redirect_hop(&["127.0.0.1"], ""),
            Blocked,
            Some("dns.localhost"),
            "answered 127.0.0.1 for rights.example",
        ),
        row(
            "twin: redirect to a CDN host with consistent DNS",
            redirect_hop(&[RIGHTS_IP], ""),
            Accessible,
            None,
            "over TLS verified for the name",
        ),
        row(
            "twin: the hop's answer differs from the control's (another CDN node)",
            redirect_hop(&["203.0.113.77"], ""),
            Accessible,
            None,
            "over TLS verified for the name",
        ),
    ];
    let v = rows[0].m.test_keys.x_verdict.clone().unwrap();
    assert_eq!(v.confidence.as_deref(), Some("confirmed"));
    let v = rows[2].m.test_keys.x_verdict.clone().unwrap();
    assert_eq!(v.confidence.as_deref(), Some("likely"), "{:?}", v.evidence);
    assert!(
        v.evidence[0].contains("the control resolved 203.0.113.9"),
        "{:?}",
        v.evidence
    );
    run_rows(rows);
}

// ------------------------------------------------------- diverted names ----

const MIDDLEBOX: &str = "198.51.100.77";
const MIDDLEBOX_EP: &str = "198.51.100.77:443";

/// The system resolver answers `addr` for HOST; a TLS handshake there
/// verifies for the name (the proxy passes TLS through by SNI) and the page
/// loads; the public resolver and the control give SITE.
fn answered(addr: &'static str, asns: &'static [(&'static str, u32)]) -> Measurement {
    let ep: &'static str = if addr == MIDDLEBOX {
        MIDDLEBOX_EP
    } else {
        "203.0.113.99:443"
    };
    let mut b = url(US)
        .sys(&[addr])
        .udp("198.51.100.53:53", &[SITE])
        .tcp(ep, "")
        .tls(ep, "")
        .page(US, ep, "Phnom Penh Daily News", "body")
        .control(
            ctl(&[SITE])
                .tcp(EP443, true)
                .tls(EP443, "")
                .page("Phnom Penh Daily News", 5000),
        );
    if !asns.is_empty() {
        b = b.asn(asns);
    }
    b.run()
}

/// A cleartext page through a transparent HTTP proxy at the diverted
/// address: the same page as the control's.
fn diverted_http() -> Measurement {
    let site = html("Phnom Penh Daily News", &front_page(300));
    url(U)
        .sys(&[MIDDLEBOX])
        .tcp("198.51.100.77:80", "")
        .resp(
            U,
            "198.51.100.77:80",
            200,
            "Phnom Penh Daily News",
            &front_page(300),
            &[("Server", "nginx")],
        )
        .control(
            ctl(&[SITE])
                .tcp(EP80, true)
                .http(
                    200,
                    "Phnom Penh Daily News",
                    site.len() as i64,
                    &[("Server", "nginx")],
                )
                .text(&site),
        )
        .asn(&[(MIDDLEBOX, 64999), (SITE, 64500)])
        .run()
}

#[test]
fn a_name_diverted_to_a_middlebox() {
    let asns: &'static [(&'static str, u32)] =
        &[(MIDDLEBOX, 64999), (SITE, 64500), ("203.0.113.99", 64500)];
    let rows = vec![
        Row {
            interference: &["dns.diverted"],
            ..row(
                "13.3 TLS passed through a middlebox (other ASN)",
                answered(MIDDLEBOX, asns),
                Accessible,
                None,
                "dns.diverted: the system resolver answered 198.51.100.77 (AS64999)",
            )
        },
        Row {
            interference: &["dns.diverted"],
            ..row(
                "13.3 HTTP proxy at the diverted address, same page",
                diverted_http(),
                Accessible,
                None,
                "outside the network of the control's addresses",
            )
        },
        row(
            "twin: another legitimate CDN address (same ASN, cert verifies)",
            answered("203.0.113.99", asns),
            Accessible,
            None,
            "the same network, by ASN",
        ),
        row(
            "without ASN data: unknown, said so, no flag",
            answered(MIDDLEBOX, &[]),
            Accessible,
            None,
            "without ASN data for 198.51.100.77",
        ),
    ];
    let v = rows[0].m.test_keys.x_verdict.clone().unwrap();
    let text = v.evidence.join(" | ");
    assert!(
        text.contains("the control resolved 203.0.113.7 (AS64500)")
            && text.contains("resolver 198.51.100.53:53 (udp) answered 203.0.113.7"),
        "{text}"
    );
    run_rows(rows);
}
