//! Scrubbing the probe's public address out of a measurement.
//!
//! The public address is learnt from the control (`x_client_addr`, also in
//! our control's health answer) and from STUN; a special-purpose address
//! (loopback, private, CGNAT, ... — a control on the same host, behind a
//! proxy or a tunnel) is never taken for it ([`is_usable_public`]).
//!
//! What is scrubbed: page content, headers and failure text — every string
//! of the measurement, base64 bodies decoded first — except the fields that
//! are the measurement itself: `probe_ip`, `input`, `test_helpers`, the
//! control request we sent, and the DNS/TCP/TLS records (`queries`,
//! `tcp_connect`, `tls_handshakes`, `network_events`, `x_injection`, and
//! the control's `dns`, `tcp_connect`, `tls_handshake`, `ip_info`), where
//! only `failure` strings are scrubbed. Rewriting those would erase
//! evidence (a `dns.localhost` block answers 127.0.0.1).
//!
//! Spellings found (IPv4 `203.0.113.99`): dotted with any of `.`, `-`,
//! `_`, `%2E`, `&#46;`, `&#x2e;`, `&period;` between octets, octets
//! zero-padded (`203.000.113.099`), in either order (reverse DNS,
//! `99.113.0.203.in-addr.arpa`), 8 hex digits (`cb007163`), the 32-bit
//! decimal (`3405803875`); IPv6 short and long forms in either case, with
//! `:`, `-` or `%3A`. A body cut at the cap that ends in the start of one
//! of these (`... 203.0.`) has that tail scrubbed too.

use std::net::IpAddr;

use base64::Engine;
use regex::bytes::Regex;
use serde_json::{Map, Value};

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

/// True when `ip` can be the probe's public address: globally routable, or
/// in a documentation range (which no real visitor has, so tests use it to
/// stand for a public address). Loopback, private, link-local, CGNAT and
/// the other special-purpose addresses are never taken for it.
pub fn is_usable_public(ip: IpAddr) -> bool {
    !probes::ipclass::is_special_purpose(ip) || is_documentation(ip.to_canonical())
}

fn is_documentation(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => {
            let o = v4.octets();
            matches!(
                (o[0], o[1], o[2]),
                (192, 0, 2) | (198, 51, 100) | (203, 0, 113)
            )
        }
        IpAddr::V6(v6) => v6.segments()[0] == 0x2001 && v6.segments()[1] == 0x0db8,
    }
}

/// Replaces every spelling of `addrs` in every string of `v` by
/// [`SCRUBBED`] (for values that are not measurements, e.g. `x_trace`).
pub fn scrub(v: &mut Value, addrs: &[IpAddr]) {
    if let Some(m) = Matcher::new(addrs) {
        m.value(v, Mode::All);
    }
}

/// Scrubs a measurement (df-000 envelope): everything but the fields that
/// are the measurement itself (see the module documentation).
pub fn scrub_measurement(v: &mut Value, addrs: &[IpAddr]) {
    let Some(m) = Matcher::new(addrs) else {
        return;
    };
    let Value::Object(root) = v else {
        m.value(v, Mode::All);
        return;
    };
    for (k, val) in root.iter_mut() {
        match k.as_str() {
            "probe_ip" | "input" | "test_helpers" => {}
            "test_keys" => m.test_keys(val),
            _ => m.value(val, Mode::All),
        }
    }
}

/// What to scrub below a point.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Mode {
    /// Every string.
    All,
    /// Only values under keys named `failure` (records).
    FailuresOnly,
}

struct Matcher {
    /// The address spellings, each with its boundary rule.
    patterns: Vec<(Regex, Boundary)>,
    /// Literal spellings whose start may end a truncated body.
    prefixes: Vec<Vec<u8>>,
}

/// What may not touch a match on either side (so `1.2.3.4` is not found
/// inside `11.2.3.45`).
#[derive(Clone, Copy)]
enum Boundary {
    Digit,
    Hex,
}

impl Boundary {
    fn touches(self, b: u8) -> bool {
        match self {
            Boundary::Digit => b.is_ascii_digit(),
            Boundary::Hex => b.is_ascii_hexdigit(),
        }
    }
}

const V4_SEP: &str = r"(?:\.|-|_|%2[eE]|&#0*46;|&#[xX]0*2[eE];|&period;)";

impl Matcher {
    fn new(addrs: &[IpAddr]) -> Option<Matcher> {
        if addrs.is_empty() {
            return None;
        }
        let mut patterns = Vec::new();
        let mut prefixes = Vec::new();
        for a in addrs {
            match a.to_canonical() {
                IpAddr::V4(v4) => {
                    let o = v4.octets();
                    let oct = |n: u8| {
                        if n == 0 {
                            "0{1,3}".to_string()
                        } else {
                            format!("0{{0,2}}{n}")
                        }
                    };
                    let fwd = [o[0], o[1], o[2], o[3]].map(oct).join(V4_SEP);
                    let rev = [o[3], o[2], o[1], o[0]].map(oct).join(V4_SEP);
                    let hex = format!("(?i){:08x}", u32::from(v4));
                    let dec = u32::from(v4).to_string();
                    for (p, b) in [
                        (fwd, Boundary::Digit),
                        (rev, Boundary::Digit),
                        (hex.clone(), Boundary::Hex),
                        (dec.clone(), Boundary::Digit),
                    ] {
                        if let Ok(r) = Regex::new(&p) {
                            patterns.push((r, b));
                        }
                    }
                    let dotted = v4.to_string();
                    prefixes.push(dotted.clone().into_bytes());
                    prefixes.push(dotted.replace('.', "-").into_bytes());
                    prefixes.push(o.map(|n| format!("{n:03}")).join(".").into_bytes());
                    prefixes.push(
                        [o[3], o[2], o[1], o[0]]
                            .map(|n| n.to_string())
                            .join(".")
                            .into_bytes(),
                    );
                    prefixes.push(hex.as_bytes()[4..].to_vec());
                    prefixes.push(dec.into_bytes());
                }
                IpAddr::V6(v6) => {
                    let short = v6.to_string();
                    let long = v6
                        .segments()
                        .iter()
                        .map(|s| format!("{s:04x}"))
                        .collect::<Vec<_>>()
                        .join(":");
                    for form in [&short, &long] {
                        let p = regex::escape(form).replace(':', "(?::|-|%3[aA])");
                        if let Ok(r) = Regex::new(&format!("(?i){p}")) {
                            patterns.push((r, Boundary::Hex));
                        }
                        prefixes.push(form.clone().into_bytes());
                    }
                }
            }
        }
        Some(Matcher { patterns, prefixes })
    }

    /// Replaces every match; `None` when nothing matched.
    fn replace(&self, hay: &[u8]) -> Option<Vec<u8>> {
        let mut cur: Option<Vec<u8>> = None;
        for (re, boundary) in &self.patterns {
            let text: &[u8] = cur.as_deref().unwrap_or(hay);
            let mut out = Vec::new();
            let mut last = 0;
            let mut pos = 0;
            let mut hit = false;
            while let Some(m) = re.find_at(text, pos) {
                let before = m.start().checked_sub(1).map(|i| text[i]);
                let after = text.get(m.end()).copied();
                let clear = !before.is_some_and(|b| boundary.touches(b))
                    && !after.is_some_and(|b| boundary.touches(b));
                if clear {
                    out.extend_from_slice(&text[last..m.start()]);
                    out.extend_from_slice(SCRUBBED.as_bytes());
                    last = m.end();
                    pos = m.end();
                    hit = true;
                } else {
                    pos = m.start() + 1;
                }
                if pos > text.len() {
                    break;
                }
            }
            if hit {
                out.extend_from_slice(&text[last..]);
                cur = Some(out);
            }
        }
        cur
    }

    /// A body cut at the cap may end in the first characters of an
    /// address: scrubs such a tail (at least two characters, not preceded
    /// by a digit or letter).
    fn truncated_tail(&self, body: &[u8]) -> Option<Vec<u8>> {
        let max = self.prefixes.iter().map(Vec::len).max().unwrap_or(0);
        for k in (2..=max.min(body.len())).rev() {
            let tail = &body[body.len() - k..];
            let before = body.len().checked_sub(k + 1).map(|i| body[i]);
            if before.is_some_and(|b| b.is_ascii_alphanumeric()) {
                continue;
            }
            let is_start = self
                .prefixes
                .iter()
                .any(|p| p.len() > k && p[..k].eq_ignore_ascii_case(tail));
            if is_start {
                let mut out = body[..body.len() - k].to_vec();
                out.extend_from_slice(SCRUBBED.as_bytes());
                return Some(out);
            }
        }
        None
    }

    fn string(&self, s: &mut String) {
        if let Some(new) = self.replace(s.as_bytes()) {
            *s = String::from_utf8(new).unwrap_or_default();
        }
    }

    fn test_keys(&self, tk: &mut Value) {
        let Value::Object(o) = tk else {
            return self.value(tk, Mode::All);
        };
        for (k, val) in o.iter_mut() {
            match k.as_str() {
                "queries" | "tcp_connect" | "tls_handshakes" | "network_events" | "x_injection" => {
                    self.value(val, Mode::FailuresOnly)
                }
                "x_control_request" => {}
                "control" => self.control(val),
                _ => self.value(val, Mode::All),
            }
        }
    }

    fn control(&self, c: &mut Value) {
        let Value::Object(o) = c else {
            return self.value(c, Mode::All);
        };
        for (k, val) in o.iter_mut() {
            match k.as_str() {
                "dns" | "tcp_connect" | "tls_handshake" | "quic_handshake" | "ip_info" => {
                    self.value(val, Mode::FailuresOnly)
                }
                _ => self.value(val, Mode::All),
            }
        }
    }

    fn value(&self, v: &mut Value, mode: Mode) {
        match v {
            Value::String(s) if mode == Mode::All => self.string(s),
            Value::Array(a) => a.iter_mut().for_each(|x| self.value(x, mode)),
            Value::Object(o) if mode == Mode::FailuresOnly => {
                for (k, val) in o.iter_mut() {
                    let m = if k == "failure" { Mode::All } else { mode };
                    self.value(val, m);
                }
            }
            Value::Object(o) => self.object(o),
            _ => {}
        }
    }

    fn object(&self, o: &mut Map<String, Value>) {
        let truncated = o.get("body_is_truncated").and_then(Value::as_bool) == Some(true);
        if let Some(body) = o.get_mut("body") {
            self.body(body, truncated);
        }
        let keys: Vec<String> = o.keys().cloned().collect();
        for k in keys {
            if let Some(new) = self.replace(k.as_bytes()) {
                let new = String::from_utf8(new).unwrap_or_default();
                if let Some(val) = o.remove(&k) {
                    o.insert(new, val);
                }
            }
        }
        for (k, val) in o.iter_mut() {
            if k != "body" {
                self.value(val, Mode::All);
            }
        }
    }

    /// A body: a string or `{"format": "base64", "data": ...}`.
    fn body(&self, body: &mut Value, truncated: bool) {
        match body {
            Value::String(s) => {
                self.string(s);
                if truncated {
                    if let Some(new) = self.truncated_tail(s.as_bytes()) {
                        *s = String::from_utf8(new).unwrap_or_default();
                    }
                }
            }
            Value::Object(o) if o.get("format").and_then(Value::as_str) == Some("base64") => {
                if let Some(Value::String(data)) = o.get_mut("data") {
                    let engine = base64::engine::general_purpose::STANDARD;
                    if let Ok(bytes) = engine.decode(data.as_bytes()) {
                        let mut new = self.replace(&bytes);
                        if truncated {
                            let cur = new.as_deref().unwrap_or(&bytes);
                            if let Some(t) = self.truncated_tail(cur) {
                                new = Some(t);
                            }
                        }
                        if let Some(new) = new {
                            *data = engine.encode(new);
                        }
                    }
                }
            }
            other => self.value(other, Mode::All),
        }
    }
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

    fn addr() -> IpAddr {
        "203.0.113.99".parse().unwrap()
    }

    #[test]
    fn every_spelling_is_scrubbed() {
        let spellings = [
            "203.0.113.99",
            "ip-203-0-113-99.isp.example",
            "203_0_113_99",
            "cb007163",
            "CB007163",
            "0xcb007163",
            "203.000.113.099",
            "203%2E0%2E113%2E99",
            "203%2e0%2e113%2e99",
            "203&#46;0&#46;113&#46;99",
            "203&#x2e;0&#x2e;113&#x2e;99",
            "203&period;0&period;113&period;99",
            "99.113.0.203.in-addr.arpa",
            "3405803875",
            "http://203-0-113-99.nip.example/next",
        ];
        for sp in spellings {
            let mut v = json!([format!("seen: {sp}!")]);
            scrub(&mut v, &[addr()]);
            let got = v[0].as_str().unwrap();
            assert!(got.contains(SCRUBBED), "{sp} -> {got}");
            assert!(!got.contains("113"), "{sp} -> {got}");
        }
        // Other addresses and numbers that merely contain the digits.
        let keep = [
            "203.0.113.990",
            "1203.0.113.99",
            "203.0.113.9",
            "203.0.113.98",
            "acb007163f",
            "34058038750",
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
        ];
        for k in keep {
            let mut v = json!([k]);
            scrub(&mut v, &[addr()]);
            assert_eq!(v[0], k);
        }
    }

    #[test]
    fn records_input_and_helpers_are_never_rewritten() {
        let public = "203.0.113.99";
        let mut m = json!({
            "probe_ip": "127.0.0.1",
            "input": format!("http://{public}:8081/"),
            "test_helpers": {"backend": {"address": format!("http://{public}:9000/")}},
            "test_keys": {
                "queries": [{"answers": [{"ipv4": public}], "failure": format!("seen from {public}")}],
                "tcp_connect": [{"ip": public, "port": 80, "status": {"failure": format!("to {public}")}}],
                "x_control_request": {"http_request": format!("http://{public}:8081/")},
                "control": {
                    "dns": {"addrs": [public], "failure": null},
                    "tcp_connect": {format!("{public}:80"): {"status": true}},
                    "http_request": {"headers": {"x-seen": public}, "title": format!("You are {public}")}
                },
                "requests": [{"failure": format!("reset by {public}"),
                    "response": {"headers": {"x-seen": public}, "body": format!("hi {public}")}}],
                "control_failure": format!("control said {public}")
            }
        });
        scrub_measurement(&mut m, &[addr()]);
        let tk = &m["test_keys"];
        assert_eq!(m["probe_ip"], "127.0.0.1");
        assert_eq!(m["input"], "http://203.0.113.99:8081/");
        assert_eq!(
            m["test_helpers"]["backend"]["address"],
            "http://203.0.113.99:9000/"
        );
        assert_eq!(tk["queries"][0]["answers"][0]["ipv4"], public);
        assert_eq!(tk["queries"][0]["failure"], "seen from [scrubbed]");
        assert_eq!(tk["tcp_connect"][0]["ip"], public);
        assert_eq!(tk["tcp_connect"][0]["status"]["failure"], "to [scrubbed]");
        assert_eq!(
            tk["x_control_request"]["http_request"],
            "http://203.0.113.99:8081/"
        );
        assert_eq!(tk["control"]["dns"]["addrs"][0], public);
        assert!(tk["control"]["tcp_connect"]["203.0.113.99:80"].is_object());
        assert_eq!(tk["control"]["http_request"]["headers"]["x-seen"], SCRUBBED);
        assert_eq!(tk["control"]["http_request"]["title"], "You are [scrubbed]");
        assert_eq!(tk["requests"][0]["failure"], "reset by [scrubbed]");
        assert_eq!(tk["requests"][0]["response"]["headers"]["x-seen"], SCRUBBED);
        assert_eq!(tk["requests"][0]["response"]["body"], "hi [scrubbed]");
        assert_eq!(tk["control_failure"], "control said [scrubbed]");
    }

    #[test]
    fn a_body_cut_in_the_middle_of_the_address() {
        let engine = base64::engine::general_purpose::STANDARD;
        let mut v = json!({"requests": [
            {"response": {"body": "Your address is 203.0.", "body_is_truncated": true}},
            {"response": {"body": {"format": "base64", "data": engine.encode(b"\xffip=203-0-11")},
                          "body_is_truncated": true}},
            // Not cut: an ending that merely looks like a start stays.
            {"response": {"body": "version 20", "body_is_truncated": false}},
            // Cut, but the tail is part of a longer number.
            {"response": {"body": "id 4203.0.", "body_is_truncated": true}}
        ]});
        scrub(&mut v, &[addr()]);
        let r = &v["requests"];
        assert_eq!(r[0]["response"]["body"], "Your address is [scrubbed]");
        let d = engine
            .decode(r[1]["response"]["body"]["data"].as_str().unwrap())
            .unwrap();
        assert_eq!(d, b"\xffip=[scrubbed]");
        assert_eq!(r[2]["response"]["body"], "version 20");
        assert_eq!(r[3]["response"]["body"], "id 4203.0.");
    }

    #[test]
    fn special_purpose_addresses_are_never_the_public_one() {
        for a in [
            "127.0.0.1",
            "10.1.2.3",
            "192.168.1.1",
            "100.64.0.1",
            "::1",
            "::ffff:127.0.0.1",
            "fe80::1",
            "0.0.0.0",
        ] {
            assert!(!is_usable_public(a.parse().unwrap()), "{a}");
        }
        for a in [
            "203.0.113.99",
            "198.51.100.7",
            "2001:db8::5",
            "1.1.1.1",
            "2a00:1450::1",
        ] {
            assert!(is_usable_public(a.parse().unwrap()), "{a}");
        }
    }
}
