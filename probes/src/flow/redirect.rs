//! Redirect targets: resolving and validating a `Location` — the one
//! redirect rule of the probe and the control.

use crate::failure::Failure;
use url::{ParseError, Url};

/// Redirects followed, as browsers and OONI do; one more ends the chain
/// with [`TOO_MANY_REDIRECTS`].
pub const MAX_REDIRECTS: u32 = 10;
/// The failure of a chain longer than the redirects followed (OONI's exact
/// string).
pub const TOO_MANY_REDIRECTS: &str = "unknown_failure: stopped after too many redirects";

/// Checks that `url` can be measured: http or https, with a non-empty host.
pub fn check_url(url: &Url) -> Result<(), Failure> {
    if !matches!(url.scheme(), "http" | "https") {
        return Err(Failure::Unknown(format!(
            "unsupported scheme {:?} (only http and https)",
            url.scheme()
        )));
    }
    match url.host_str() {
        Some(h) if !h.is_empty() => Ok(()),
        _ => Err(Failure::HttpInvalidRedirectLocationHost),
    }
}

/// The URL a redirect from `base` with this `Location` leads to. A Location
/// whose host is empty or unparseable is `http_invalid_redirect_location_host`
/// (as OONI); another scheme than http(s) is an `unknown_failure`.
pub fn next_url(base: &Url, location: &str) -> Result<Url, Failure> {
    let next = base.join(location.trim()).map_err(|e| match e {
        ParseError::EmptyHost
        | ParseError::IdnaError
        | ParseError::InvalidPort
        | ParseError::InvalidIpv4Address
        | ParseError::InvalidIpv6Address
        | ParseError::InvalidDomainCharacter => Failure::HttpInvalidRedirectLocationHost,
        other => Failure::Unknown(format!("invalid redirect location: {other}")),
    })?;
    if !matches!(next.scheme(), "http" | "https") {
        return Err(Failure::Unknown(format!(
            "unsupported redirect scheme {:?}",
            next.scheme()
        )));
    }
    check_url(&next)?;
    Ok(next)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn base() -> Url {
        Url::parse("http://a.example/dir/page?q=1").unwrap()
    }

    #[test]
    fn relative_and_absolute_locations() {
        assert_eq!(
            next_url(&base(), "/x").unwrap().as_str(),
            "http://a.example/x"
        );
        assert_eq!(
            next_url(&base(), "other").unwrap().as_str(),
            "http://a.example/dir/other"
        );
        assert_eq!(
            next_url(&base(), "https://b.example:8443/y")
                .unwrap()
                .as_str(),
            "https://b.example:8443/y"
        );
        assert_eq!(
            next_url(&base(), "//c.example/z").unwrap().as_str(),
            "http://c.example/z"
        );
    }

    #[test]
    fn broken_locations() {
        assert_eq!(
            next_url(&base(), "http://"),
            Err(Failure::HttpInvalidRedirectLocationHost)
        );
        assert_eq!(
            next_url(&base(), "https://"),
            Err(Failure::HttpInvalidRedirectLocationHost)
        );
        assert_eq!(
            next_url(&base(), "http://[::1"),
            Err(Failure::HttpInvalidRedirectLocationHost)
        );
        assert_eq!(
            next_url(&base(), "ftp://files.example/"),
            Err(Failure::Unknown(
                "unsupported redirect scheme \"ftp\"".into()
            ))
        );
    }

    #[test]
    fn input_checks() {
        assert!(check_url(&Url::parse("https://a.example/").unwrap()).is_ok());
        assert_eq!(
            check_url(&Url::parse("mailto:x@a.example").unwrap()),
            Err(Failure::Unknown(
                "unsupported scheme \"mailto\" (only http and https)".into()
            ))
        );
    }
}
