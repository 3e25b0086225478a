//! Issue 13 through the real pipeline on loopback: the web measurement, the
//! in-process control (which sends its page's text fingerprint) and the
//! analysis. A page whose text changes by 40 % on every request, DNS
//! tampering on a redirect hop (and its twin), and a name diverted to a
//! box that passes TLS through (and its same-network twin).

use std::net::{IpAddr, Ipv4Addr};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use gatewatch::analysis::{analyze, AnalysisContext, AsnLookup};
use gatewatch::model::{Measurement, VerdictStatus};
use gatewatch::web::{measure, WebSettings};

use super::{answer, fixed, nxdomain, page, public, twins, world, World, BLOCK, HOST, SITE};
use crate::fakes::dns::{self as fdns, Reply, Script};
use crate::fakes::http::{response, Behaviour, SeenRequest};

/// Measures `url` with the probe's UDP resolvers answering `replies` (the
/// first is the headline resolver), then analyses it with `asns` as the
/// ASN database.
async fn run_with(
    w: &World,
    url: &str,
    replies: Vec<Reply>,
    asns: &'static [(Ipv4Addr, u32)],
) -> Measurement {
    // Without a system resolver the analysis takes the UDP resolver whose
    // address sorts first as the headline one: spawn them in that order.
    let mut fakes: Vec<fdns::DnsFake> = Vec::new();
    for r in replies {
        let mut f = fdns::spawn(Script::always(r.clone())).await;
        while fakes
            .last()
            .is_some_and(|p| p.addr.to_string() >= f.addr.to_string())
        {
            f = fdns::spawn(Script::always(r.clone())).await;
        }
        fakes.push(f);
    }
    let s = WebSettings {
        resolvers: fakes.iter().map(|f| f.addr).collect(),
        system_resolver: false,
        roots: w.ca.roots(),
        treat_as_public: public(),
        listen_after_first: Duration::from_millis(100),
        tcp: Duration::from_secs(3),
        tls: Duration::from_secs(3),
        http: Duration::from_secs(5),
        url_deadline: Duration::from_secs(30),
        ..WebSettings::default()
    };
    let keys = measure(url, &s, Some(&w.client)).await;
    let mut m = Measurement {
        input: Some(url.to_string()),
        probe_cc: "KH".into(),
        test_keys: keys,
        ..Measurement::default()
    };
    let asn_db: Option<AsnLookup> = (!asns.is_empty()).then(|| {
        let f: AsnLookup = Arc::new(move |ip: IpAddr| {
            asns.iter()
                .find(|(a, _)| IpAddr::V4(*a) == ip)
                .map(|(_, n)| *n)
        });
        f
    });
    let ctx = AnalysisContext {
        probe_cc: "KH".into(),
        treat_as_public: public(),
        asn_db,
        ..AnalysisContext::default()
    };
    analyze(&mut m, &ctx);
    m
}

/// `n` deterministic words; `fresh` replaces a block of 40 % of them.
fn text(n: usize, fresh: Option<usize>) -> String {
    let mut s: u64 = 7;
    let mut w: Vec<String> = (0..n)
        .map(|_| {
            s ^= s << 13;
            s ^= s >> 7;
            s ^= s << 17;
            format!("word{}", s % 40_000)
        })
        .collect();
    if let Some(k) = fresh {
        let len = n * 2 / 5;
        let start = (k * 37) % (n - len);
        for (i, x) in w[start..start + len].iter_mut().enumerate() {
            *x = format!("fresh{k}x{i}");
        }
    }
    w.join(" ")
}

fn verdict(m: &Measurement) -> (VerdictStatus, Option<String>, Vec<String>, String) {
    let v = m.test_keys.x_verdict.clone().unwrap_or_default();
    (
        v.status,
        v.mechanism,
        v.interference,
        v.evidence.join(" | "),
    )
}

#[tokio::test]
async fn pipeline_page_whose_text_changes_40_percent_is_accessible() {
    let w = world(answer(SITE)).await;
    let n = Arc::new(AtomicUsize::new(0));
    let dynamic = {
        let n = Arc::clone(&n);
        Behaviour::Handle(Arc::new(move |_r: &SeenRequest| {
            let k = n.fetch_add(1, Ordering::SeqCst);
            page("Phnom Penh Daily News", &text(300, Some(k + 1)))
        }))
    };
    let port = twins(dynamic, fixed(page("Blocked", "blocked")), None).await;
    let m = run_with(
        &w,
        &format!("http://{HOST}:{port}/"),
        vec![answer(SITE)],
        &[],
    )
    .await;
    let (status, mech, _, ev) = verdict(&m);
    assert_eq!((status, mech), (VerdictStatus::Accessible, None), "{ev}");
    assert!(ev.contains("saying what the control's page says"), "{ev}");
    assert!(m.test_keys.control.as_ref().unwrap().x_body_text.is_some());
    assert!(
        n.load(Ordering::SeqCst) >= 2,
        "the probe and the control both fetched"
    );
}

#[tokio::test]
async fn pipeline_dns_tampering_on_a_redirect_hop() {
    let w = world(answer(SITE)).await;
    // 127.0.0.2:P answers 301 to http://rights.example:P/, which serves the
    // page (the same server, by Host).
    let port_cell = Arc::new(AtomicUsize::new(0));
    let site = {
        let port_cell = Arc::clone(&port_cell);
        Behaviour::Handle(Arc::new(move |r: &SeenRequest| {
            let port = port_cell.load(Ordering::SeqCst);
            if r.header("host")
                .is_some_and(|h| h.starts_with("rights.example"))
            {
                page("Rights Watch", "reports on rights in the region")
            } else {
                let loc = format!("http://rights.example:{port}/");
                response(301, "Moved", &[("Location", loc.as_str())], b"")
            }
        }))
    };
    let port = twins(site, fixed(page("Blocked", "blocked")), None).await;
    port_cell.store(usize::from(port), Ordering::SeqCst);
    let url = format!("http://{SITE}:{port}/abc");

    // The headline resolver says NXDOMAIN; the second one's answer lets
    // the fetch go on.
    let m = run_with(&w, &url, vec![nxdomain(), answer(SITE)], &[]).await;
    let (status, mech, _, ev) = verdict(&m);
    assert_eq!(
        (status, mech.as_deref()),
        (VerdictStatus::Blocked, Some("dns.nxdomain")),
        "{ev}"
    );
    assert!(ev.contains("rights.example, a redirect target"), "{ev}");
    assert_eq!(
        m.test_keys.requests.first().map(|r| r.response.code),
        Some(200),
        "the page loaded through the other resolver"
    );

    // Twin: consistent DNS for the redirect target.
    let m = run_with(&w, &url, vec![answer(SITE), answer(SITE)], &[]).await;
    let (status, mech, _, ev) = verdict(&m);
    assert_eq!((status, mech), (VerdictStatus::Accessible, None), "{ev}");
}

#[tokio::test]
async fn pipeline_name_diverted_to_a_box_passing_tls_through() {
    let w = world(answer(SITE)).await;
    // Both addresses hold the site's genuine certificate and page: the box
    // at BLOCK passes TLS through.
    let cert = w.ca.issue(&[HOST]);
    let genuine = page("Phnom Penh Daily News", &text(200, None));
    let port = twins(fixed(genuine.clone()), fixed(genuine), Some((&cert, &cert))).await;
    let url = format!("https://{HOST}:{port}/");

    // The ISP resolver sends the name to BLOCK, another network.
    let m = run_with(
        &w,
        &url,
        vec![answer(BLOCK)],
        &[(BLOCK, 64999), (SITE, 64500)],
    )
    .await;
    let (status, mech, interference, ev) = verdict(&m);
    assert_eq!(
        (status, mech, interference),
        (
            VerdictStatus::Accessible,
            None,
            vec!["dns.diverted".to_string()]
        ),
        "{ev}"
    );
    assert!(
        ev.contains("answered 127.0.0.3 (AS64999), outside the network")
            && ev.contains("the control resolved 127.0.0.2 (AS64500)"),
        "{ev}"
    );

    // Twin: another address of the site's own network (a CDN node).
    let m = run_with(
        &w,
        &url,
        vec![answer(BLOCK)],
        &[(BLOCK, 64500), (SITE, 64500)],
    )
    .await;
    let (status, mech, interference, ev) = verdict(&m);
    assert_eq!(
        (status, mech, interference),
        (VerdictStatus::Accessible, None, Vec::<String>::new()),
        "{ev}"
    );
    assert!(ev.contains("the same network, by ASN"), "{ev}");
}
