//! Scrubbing the probe's public address out of a measurement.
//!
//! The control reports the address it saw the probe come from
//! (`x_client_addr`). That address is used once for the ASN/country lookup
//! and is then replaced by `[scrubbed]` everywhere in the measurement: every
//! string (bodies, headers, failure strings, DNS answers), every object key,
//! and the bytes inside base64 bodies. `x_client_addr` itself is taken out
//! of the measurement before (`run::measure`).

use std::net::IpAddr;

use base64::Engine;
use serde_json::Value;

/// What replaces the address.
pub const SCRUBBED: &str = "[scrubbed]";

/// Parses `ip`, `ip:port` or `[v6]:port`.
pub fn parse_addr(s: &str) -> Option<IpAddr> {
    let s = s.trim();
    s.parse::<IpAddr>()
        .ok()
        .or_else(|| s.parse::<std::net::SocketAddr>().ok().map(|sa| sa.ip()))
        .or_else(|| s.trim_matches(['[', ']']).parse().ok())
}

/// Replaces every textual form of `addrs` in `v` by [`SCRUBBED`].
pub fn scrub(v: &mut Value, addrs: &[IpAddr]) {
    if addrs.is_empty() {
        return;
    }
    let needles: Vec<Needle> = addrs.iter().flat_map(|a| Needle::forms(*a)).collect();
    scrub_value(v, &needles);
}

/// One textual form of an address and what may not touch it on either side
/// (so that `1.2.3.4` does not match inside `11.2.3.45`).
struct Needle {
    text: Vec<u8>,
    v6: bool,
}

impl Needle {
    fn forms(a: IpAddr) -> Vec<Needle> {
        match a {
            IpAddr::V4(v4) => vec![Needle {
                text: v4.to_string().into_bytes(),
                v6: false,
            }],
            IpAddr::V6(v6) => {
                let short = v6.to_string();
                let seg = v6.segments();
                let long = seg
                    .iter()
                    .map(|s| format!("{s:04x}"))
                    .collect::<Vec<_>>()
                    .join(":");
                let mut forms = vec![short.clone(), short.to_ascii_uppercase(), long.clone()];
                forms.push(long.to_ascii_uppercase());
                forms.sort();
                forms.dedup();
                forms
                    .into_iter()
                    .map(|f| Needle {
                        text: f.into_bytes(),
                        v6: true,
                    })
                    .collect()
            }
        }
    }

    fn touches(&self, b: u8) -> bool {
        if self.v6 {
            b.is_ascii_hexdigit() || b == b':'
        } else {
            b.is_ascii_digit()
        }
    }
}

fn scrub_value(v: &mut Value, needles: &[Needle]) {
    match v {
        Value::String(s) => {
            if let Some(new) = replace(s.as_bytes(), needles) {
                *s = String::from_utf8(new).unwrap_or_default();
            }
        }
        Value::Array(a) => a.iter_mut().for_each(|x| scrub_value(x, needles)),
        Value::Object(o) => {
            // A base64 body: scrub the decoded bytes.
            if o.get("format").and_then(Value::as_str) == Some("base64") {
                if let Some(Value::String(data)) = o.get_mut("data") {
                    let engine = base64::engine::general_purpose::STANDARD;
                    if let Ok(bytes) = engine.decode(data.as_bytes()) {
                        if let Some(new) = replace(&bytes, needles) {
                            *data = engine.encode(new);
                        }
                    }
                }
            }
            let keys: Vec<String> = o.keys().cloned().collect();
            for k in keys {
                if let Some(new) = replace(k.as_bytes(), needles) {
                    let new = String::from_utf8(new).unwrap_or_default();
                    if let Some(val) = o.remove(&k) {
                        o.insert(new, val);
                    }
                }
            }
            o.values_mut().for_each(|x| scrub_value(x, needles));
        }
        _ => {}
    }
}

/// Returns the replaced bytes, or `None` when nothing matched.
fn replace(hay: &[u8], needles: &[Needle]) -> Option<Vec<u8>> {
    let mut out: Option<Vec<u8>> = None;
    let mut cur: Vec<u8> = hay.to_vec();
    for n in needles {
        if n.text.is_empty() || cur.len() < n.text.len() {
            continue;
        }
        let mut res = Vec::with_capacity(cur.len());
        let mut i = 0;
        let mut hit = false;
        while i < cur.len() {
            if cur[i..].starts_with(&n.text) {
                let before = i.checked_sub(1).map(|j| cur[j]);
                let after = cur.get(i + n.text.len()).copied();
                if !before.is_some_and(|b| n.touches(b)) && !after.is_some_and(|b| n.touches(b)) {
                    res.extend_from_slice(SCRUBBED.as_bytes());
                    i += n.text.len();
                    hit = true;
                    continue;
                }
            }
            res.push(cur[i]);
            i += 1;
        }
        if hit {
            cur = res;
            out = Some(cur.clone());
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn address_is_scrubbed_everywhere() {
        let body = b"<p>Your address is 203.0.113.7.</p>\xff";
        let mut m = json!({
            "probe_ip": "127.0.0.1",
            "test_keys": {
                "control": {"dns": {"addrs": ["203.0.113.70"]}},
                "requests": [{
                    "failure": "connection to 203.0.113.7 refused",
                    "response": {
                        "headers": {"x-forwarded-for": "203.0.113.7, 10.0.0.1"},
                        "body": {"format": "base64", "data": base64::engine::general_purpose::STANDARD.encode(body)}
                    }
                }],
                "tcp_connect": {"203.0.113.7:80": true, "1203.0.113.7:80": false}
            }
        });
        let addr = parse_addr("203.0.113.7:41234").unwrap();
        assert_eq!(addr, "203.0.113.7".parse::<IpAddr>().unwrap());
        scrub(&mut m, &[addr]);
        let r = &m["test_keys"]["requests"][0];
        assert_eq!(r["failure"], "connection to [scrubbed] refused");
        assert_eq!(
            r["response"]["headers"]["x-forwarded-for"],
            "[scrubbed], 10.0.0.1"
        );
        let decoded = base64::engine::general_purpose::STANDARD
            .decode(r["response"]["body"]["data"].as_str().unwrap())
            .unwrap();
        assert_eq!(decoded, b"<p>Your address is [scrubbed].</p>\xff");
        // Another address that merely contains the digits is left alone.
        assert_eq!(m["test_keys"]["control"]["dns"]["addrs"][0], "203.0.113.70");
        assert!(m["test_keys"]["tcp_connect"]["[scrubbed]:80"].is_boolean());
        assert!(m["test_keys"]["tcp_connect"]["1203.0.113.7:80"].is_boolean());
    }

    #[test]
    fn ipv6_forms() {
        let a: IpAddr = "2001:db8::1".parse().unwrap();
        let mut v = json!([
            "2001:DB8::1",
            "x 2001:0db8:0000:0000:0000:0000:0000:0001 y",
            "2001:db8::10"
        ]);
        scrub(&mut v, &[a]);
        assert_eq!(v, json!(["[scrubbed]", "x [scrubbed] y", "2001:db8::10"]));
    }
}
