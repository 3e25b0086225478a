//! The control's HTTP/3 row, as oohelperd: the HTTP/3 endpoint the final
//! response announces in `Alt-Svc` (`discovered_h3_endpoint`), and, when
//! the request has `x_quic_enabled` and the site announces HTTP/3 (or the
//! request has `x_quic_always`), a QUIC handshake with the URL's SNI to
//! every https endpoint that passed the address policy (`quic_handshake`)
//! and one HTTP/3 GET of the URL over the first that verified
//! (`http3_request`).

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use probes::http::HttpParams;
use probes::records::Trace;
use probes::tls::TrustRoots;
use tokio::task::JoinSet;
use url::Url;

use super::ssrf::TargetHost;
use crate::control::protocol::{ControlHttp, ControlRequest, ControlTls};

/// At most this many QUIC handshakes per request.
pub const MAX_QUIC_ENDPOINTS: usize = 8;

/// The `host:port` of the HTTP/3 service an https response announces with
/// `Alt-Svc: h3=":port"` (same host), or empty. An alternative on another
/// host is not reported: the control does not measure it.
pub fn discovered_h3(url: &Url, alt_svc: Option<&str>) -> String {
    let (Some(alt_svc), "https", Some(host)) = (alt_svc, url.scheme(), url.host_str()) else {
        return String::new();
    };
    for entry in alt_svc.split(',') {
        let first = entry.split(';').next().unwrap_or("").trim();
        let Some(value) = first.strip_prefix("h3=") else {
            continue;
        };
        let value = value.trim_matches('"');
        if let Some(port) = value.strip_prefix(':') {
            if let Ok(port) = port.parse::<u16>() {
                return format!("{host}:{port}");
            }
        }
    }
    String::new()
}

/// Whether this request gets QUIC handshakes.
pub fn wanted(req: &ControlRequest, discovered: &str) -> bool {
    req.x_quic_enabled && (req.x_quic_always || !discovered.is_empty())
}

/// QUIC handshakes with `host`'s name (verified against it) to each
/// endpoint, in parallel, each within `timeout`; keyed by `ip:port`. Then,
/// with `get`, one HTTP/3 GET over the first verified connection (by
/// endpoint order), as `http3_request`. The endpoints must already have
/// passed the address policy.
pub async fn handshakes(
    endpoints: Vec<SocketAddr>,
    host: &TargetHost,
    roots: &Arc<TrustRoots>,
    timeout: Duration,
    get: Option<HttpParams>,
) -> (BTreeMap<String, ControlTls>, Option<ControlHttp>) {
    let host_str = host.to_string();
    let mut set = JoinSet::new();
    for addr in endpoints.into_iter().take(MAX_QUIC_ENDPOINTS) {
        let mut params = probes::quic::h3_params(&host_str, Arc::clone(roots));
        params.sni = match host {
            TargetHost::Name(n) => Some(n.clone()),
            TargetHost::Ip(_) => None,
        };
        params.timeout = timeout;
        params.fail_on_invalid = false;
        let name = host_str.clone();
        set.spawn(async move {
            let trace = Trace::new().child(3, vec!["quic".into()]);
            let (hs, conn) = probes::quic::handshake(&trace, addr, &params).await;
            let failure = hs.failure.or(hs.x_certificate_failure);
            let conn = match conn {
                Some(c) if failure.is_none() => Some((trace, c)),
                Some(c) => {
                    c.close().await;
                    None
                }
                None => None,
            };
            (
                addr.to_string(),
                ControlTls {
                    server_name: name,
                    status: failure.is_none(),
                    failure: failure.map(|f| f.to_string()),
                },
                conn,
            )
        });
    }
    let mut out = BTreeMap::new();
    let mut conns = BTreeMap::new();
    while let Some(r) = set.join_next().await {
        if let Ok((key, tls, conn)) = r {
            if let Some(c) = conn {
                conns.insert(key.clone(), c);
            }
            out.insert(key, tls);
        }
    }
    let mut http3 = None;
    if let (Some(params), Some((trace, conn))) = (get, conns.values().next()) {
        let tx = probes::quic::get(trace, conn, &params).await;
        let body = tx.response.body.to_bytes();
        http3 = Some(match tx.failure {
            None => ControlHttp {
                body_length: body.len() as i64,
                discovered_h3_endpoint: String::new(),
                failure: None,
                title: tx.response.x_title.clone().unwrap_or_default(),
                headers: tx.response.headers.clone(),
                status_code: tx.response.code,
            },
            Some(f) => ControlHttp {
                failure: Some(f.to_string()),
                ..ControlHttp::default()
            },
        });
    }
    for (_, (_, conn)) in conns {
        conn.close().await;
    }
    (out, http3)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn alt_svc_h3_on_the_same_host() {
        let u = Url::parse("https://www.example.org/x").unwrap();
        assert_eq!(
            discovered_h3(&u, Some(r#"h3=":443"; ma=86400, h3-29=":443""#)),
            "www.example.org:443"
        );
        assert_eq!(
            discovered_h3(&u, Some(r#"h2=":443", h3=":8443"; ma=60"#)),
            "www.example.org:8443"
        );
        assert_eq!(discovered_h3(&u, Some(r#"h3="alt.example.net:443""#)), "");
        assert_eq!(discovered_h3(&u, Some("clear")), "");
        assert_eq!(discovered_h3(&u, None), "");
        let plain = Url::parse("http://www.example.org/").unwrap();
        assert_eq!(discovered_h3(&plain, Some(r#"h3=":443""#)), "");
    }

    #[test]
    fn only_opted_in_requests_get_quic() {
        let mut req = ControlRequest::default();
        assert!(!wanted(&req, "www.example.org:443"));
        req.x_quic_enabled = true;
        assert!(wanted(&req, "www.example.org:443"));
        assert!(!wanted(&req, ""));
        req.x_quic_always = true;
        assert!(wanted(&req, ""));
    }
}
