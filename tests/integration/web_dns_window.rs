//! Tests: the UDP listening window (late and duplicate replies) runs beside
//! TCP/TLS/HTTP instead of before them, and what it catches still lands in
//! the measurement.

use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;
use std::time::Duration;

use gatewatch::web::{measure, WebSettings};
use hickory_proto::op::Message;
use hickory_proto::rr::RecordType;
use tokio::net::UdpSocket;
use tokio::sync::Notify;

use crate::fakes::ca::TestCa;
use crate::fakes::dns::{reply_bytes, Reply};
use crate::fakes::http::{self as fhttp, response, Behaviour};

/// A resolver on 127.0.0.1 that answers every query at once (A: `first`,
/// AAAA: nothing) and sends a second A answer, `late`, only once `go` is
/// notified.
async fn late_dns(first: Ipv4Addr, late: Ipv4Addr, go: Arc<Notify>) -> std::net::SocketAddr {
    let sock = Arc::new(UdpSocket::bind("127.0.0.1:0").await.unwrap());
    let addr = sock.local_addr().unwrap();
    tokio::spawn(async move {
        let mut buf = vec![0u8; 4096];
        while let Ok((n, from)) = sock.recv_from(&mut buf).await {
            let Ok(q) = Message::from_vec(&buf[..n]) else {
                continue;
            };
            let is_a = q.queries.first().map(|x| x.query_type()) == Some(RecordType::A);
            let now = reply_bytes(&q, &Reply::Answer(vec![IpAddr::V4(first)]));
            let _ = sock.send_to(&now, from).await;
            if is_a {
                let (sock, go) = (Arc::clone(&sock), Arc::clone(&go));
                tokio::spawn(async move {
                    go.notified().await;
                    let later = reply_bytes(&q, &Reply::Answer(vec![IpAddr::V4(late)]));
                    let _ = sock.send_to(&later, from).await;
                });
            }
        }
    });
    addr
}

#[tokio::test]
async fn the_page_is_fetched_while_the_lookup_listens_and_its_late_reply_is_kept() {
    // The resolver sends its second, different answer only after the site
    // got our GET: with the window before the connect (the old order) the
    // lookup would have stopped listening long before, and the late reply
    // would be lost. No clock is read: the order is forced by the fakes.
    let go = Arc::new(Notify::new());
    let g = Arc::clone(&go);
    let http = fhttp::spawn(Behaviour::Handle(Arc::new(move |_| {
        g.notify_one();
        response(200, "OK", &[("Content-Type", "text/html")], b"<p>hello</p>")
    })))
    .await;
    let dns = late_dns(Ipv4Addr::LOCALHOST, Ipv4Addr::new(127, 0, 0, 2), go).await;
    let ca = TestCa::new("gatewatch test CA");
    let s = WebSettings {
        resolvers: vec![dns],
        system_resolver: false,
        roots: ca.roots(),
        treat_as_public: vec!["127.0.0.0/8".parse().unwrap()],
        // Long enough that the GET surely happens inside it.
        listen_after_first: Duration::from_secs(10),
        ..WebSettings::default()
    };
    let url = format!("http://late.example:{}/", http.addr.port());

    let k = measure(&url, &s, None).await;

    assert_eq!(k.requests.len(), 1);
    assert_eq!(k.requests[0].response.code, 200);
    let a = k.queries.iter().find(|q| q.query_type == "A").unwrap();
    assert_eq!(a.addrs(), vec![IpAddr::V4(Ipv4Addr::LOCALHOST)]);
    let sources: Vec<Vec<IpAddr>> = a
        .x_replies
        .iter()
        .map(|r| r.answers.iter().filter_map(|x| x.ip()).collect())
        .collect();
    assert_eq!(
        sources,
        vec![
            vec![IpAddr::V4(Ipv4Addr::LOCALHOST)],
            vec![IpAddr::V4(Ipv4Addr::new(127, 0, 0, 2))]
        ],
        "the reply sent after the GET is recorded"
    );
    let kinds: Vec<&str> = k.x_injection.iter().map(|e| e.kind.as_str()).collect();
    assert_eq!(kinds, vec!["dns.duplicate_replies"]);
    assert_eq!(k.x_interrupted, None);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_url_gives_its_slot_back_while_its_lookup_still_listens() {
    // One slot, two URLs. The first URL's resolver sends its late reply
    // only once the site got the second URL's GET: that happens only if the
    // first URL gave its slot back when its fetch ended, while its lookup
    // still listened. Had it held the slot for its whole window, the second
    // URL would start after the window, and the late reply would be lost.
    // No clock is read: the order is forced by the fakes.
    use gatewatch::run::measure::{measure as measure_url, UrlContext};
    use gatewatch::run::scheduler::{run_adaptive, Aimd, Ended, Load};
    use gatewatch::testlist::Entry;
    use tokio_util::sync::CancellationToken;

    let go = Arc::new(Notify::new());
    let g = Arc::clone(&go);
    let http = fhttp::spawn(Behaviour::Handle(Arc::new(move |req| {
        if req.target().contains("second") {
            g.notify_one();
        }
        response(200, "OK", &[("Content-Type", "text/html")], b"<p>hello</p>")
    })))
    .await;
    let dns = late_dns(Ipv4Addr::LOCALHOST, Ipv4Addr::new(127, 0, 0, 2), go).await;
    let ca = TestCa::new("gatewatch test CA");
    let web = WebSettings {
        resolvers: vec![dns],
        system_resolver: false,
        roots: ca.roots(),
        treat_as_public: vec!["127.0.0.0/8".parse().unwrap()],
        listen_after_first: Duration::from_secs(10),
        ..WebSettings::default()
    };
    let settings = gatewatch::run::config::resolve(
        &gatewatch::run::RunArgs::default(),
        gatewatch::run::config::FileConfig::default(),
    )
    .unwrap();
    let ctx = Arc::new(UrlContext::new(
        Arc::new(settings),
        web,
        None,
        gatewatch::geo::GeoDb::default(),
        "2026-12-07 00:00:00".into(),
    ));
    let port = http.addr.port();
    // The second URL is an address: no lookup of its own to wait for.
    let urls = [
        format!("http://late.example:{port}/first"),
        format!("http://127.0.0.1:{port}/second"),
    ];
    let entries = urls.clone().into_iter().map(|url| Entry {
        url,
        category_code: String::new(),
    });
    let mut done = Vec::new();
    let ended = run_adaptive(
        entries,
        Aimd::fixed(1),
        1,
        CancellationToken::new(),
        |e, token, slot| measure_url(Arc::clone(&ctx), e, token, slot),
        |_| Load::Fine,
        |f| -> Result<(), ()> {
            done.push(f.measurement);
            Ok(())
        },
    )
    .await
    .unwrap();

    assert_eq!(ended, Ended::Completed);
    let inputs: Vec<&str> = done.iter().filter_map(|m| m.input.as_deref()).collect();
    // The second ended first; the first is handed over only once its window
    // ended, with the late reply in it.
    assert_eq!(inputs, [urls[1].as_str(), urls[0].as_str()]);
    let first = &done[1].test_keys;
    assert_eq!(first.requests[0].response.code, 200);
    let a = first.queries.iter().find(|q| q.query_type == "A").unwrap();
    let sources: Vec<Vec<IpAddr>> = a
        .x_replies
        .iter()
        .map(|r| r.answers.iter().filter_map(|x| x.ip()).collect())
        .collect();
    assert_eq!(
        sources,
        vec![
            vec![IpAddr::V4(Ipv4Addr::LOCALHOST)],
            vec![IpAddr::V4(Ipv4Addr::new(127, 0, 0, 2))]
        ],
        "the reply sent after the second URL's GET is recorded"
    );
    assert_eq!(first.x_interrupted, None);
    assert_eq!(done[0].test_keys.requests[0].response.code, 200);
}
