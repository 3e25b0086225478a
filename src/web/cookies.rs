//! A minimal cookie jar for one redirect chain (as OONI keeps one): some
//! sites redirect to themselves until a cookie comes back. Cookies are
//! matched by domain only (no path, expiry or `Secure` handling: the chain
//! lives a few seconds and only ever sends GETs).

use url::Url;

/// The cookies set so far in one chain.
#[derive(Debug, Default)]
pub(crate) struct CookieJar {
    cookies: Vec<Cookie>,
}

#[derive(Debug)]
struct Cookie {
    name: String,
    value: String,
    /// Lower-case, without a leading dot.
    domain: String,
    /// Sent only to `domain` itself (no `Domain` attribute).
    host_only: bool,
}

impl CookieJar {
    /// Stores the `Set-Cookie` headers of a response to `url`.
    pub fn store(&mut self, url: &Url, headers: &[(String, String)]) {
        let Some(host) = url.host_str().map(str::to_ascii_lowercase) else {
            return;
        };
        for (k, v) in headers {
            if k.eq_ignore_ascii_case("set-cookie") {
                self.store_one(&host, v);
            }
        }
    }

    /// The `Cookie` header for a request to `url`, if any cookie matches.
    pub fn header(&self, url: &Url) -> Option<String> {
        let host = url.host_str()?.to_ascii_lowercase();
        let pairs: Vec<String> = self
            .cookies
            .iter()
            .filter(|c| {
                if c.host_only {
                    c.domain == host
                } else {
                    domain_match(&host, &c.domain)
                }
            })
            .map(|c| format!("{}={}", c.name, c.value))
            .collect();
        (!pairs.is_empty()).then(|| pairs.join("; "))
    }

    fn store_one(&mut self, host: &str, line: &str) {
        let mut parts = line.split(';');
        let Some((name, value)) = parts.next().and_then(|p| p.split_once('=')) else {
            return;
        };
        let (name, value) = (name.trim().to_string(), value.trim().to_string());
        if name.is_empty() {
            return;
        }
        let mut domain = None;
        let mut expired = false;
        for attr in parts {
            let (k, v) = attr.split_once('=').unwrap_or((attr, ""));
            let (k, v) = (k.trim(), v.trim());
            if k.eq_ignore_ascii_case("domain") && !v.is_empty() {
                domain = Some(v.trim_start_matches('.').to_ascii_lowercase());
            } else if k.eq_ignore_ascii_case("max-age") {
                expired = v.parse::<i64>().map(|n| n <= 0).unwrap_or(false);
            }
        }
        let (domain, host_only) = match domain {
            // A cookie for another site is refused.
            Some(d) if !domain_match(host, &d) => return,
            Some(d) => (d, false),
            None => (host.to_string(), true),
        };
        self.cookies
            .retain(|c| !(c.name == name && c.domain == domain && c.host_only == host_only));
        if !expired {
            self.cookies.push(Cookie {
                name,
                value,
                domain,
                host_only,
            });
        }
    }
}

/// RFC 6265 domain matching: `host` is `domain` or a subdomain of it.
fn domain_match(host: &str, domain: &str) -> bool {
    host == domain
        || (host.len() > domain.len()
            && host.ends_with(domain)
            && host.as_bytes()[host.len() - domain.len() - 1] == b'.')
}

#[cfg(test)]
mod tests {
    use super::*;

    fn u(s: &str) -> Url {
        Url::parse(s).unwrap()
    }

    fn set(v: &str) -> Vec<(String, String)> {
        vec![("set-cookie".to_string(), v.to_string())]
    }

    #[test]
    fn host_only_and_domain_cookies() {
        let mut jar = CookieJar::default();
        jar.store(&u("http://www.site.example/"), &set("a=1; Path=/"));
        jar.store(
            &u("http://www.site.example/"),
            &set("b=2; Domain=.site.example"),
        );
        assert_eq!(
            jar.header(&u("https://www.site.example/x")).as_deref(),
            Some("a=1; b=2")
        );
        assert_eq!(
            jar.header(&u("https://m.site.example/")).as_deref(),
            Some("b=2")
        );
        assert_eq!(jar.header(&u("https://other.example/")), None);
    }

    #[test]
    fn foreign_domains_are_refused_and_max_age_zero_deletes() {
        let mut jar = CookieJar::default();
        jar.store(&u("http://site.example/"), &set("x=1; Domain=evil.example"));
        assert_eq!(jar.header(&u("http://evil.example/")), None);
        jar.store(&u("http://site.example/"), &set("s=1"));
        jar.store(&u("http://site.example/"), &set("s=2"));
        assert_eq!(
            jar.header(&u("http://site.example/")).as_deref(),
            Some("s=2")
        );
        jar.store(&u("http://site.example/"), &set("s=; Max-Age=0"));
        assert_eq!(jar.header(&u("http://site.example/")), None);
        assert!(!domain_match("notsite.example", "site.example"));
    }
}
