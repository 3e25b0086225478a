//! OONI's failure vocabulary (df-007) as one enum.
//!
//! A failed measurement step is a value of [`Failure`], never a panic. It
//! serialises to the exact string OONI writes, so our records read next to
//! OONI's. Unknown errors keep their message as `unknown_failure: <msg>`.

use std::fmt;
use std::io;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// One failure string from OONI's vocabulary.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Failure {
    /// `connection_refused`: a RST answered our SYN.
    ConnectionRefused,
    /// `connection_reset`: a RST on an established connection.
    ConnectionReset,
    /// `connection_aborted`.
    ConnectionAborted,
    /// `host_unreachable`: ICMP host unreachable or no neighbour.
    HostUnreachable,
    /// `network_unreachable`: no route or ICMP net unreachable.
    NetworkUnreachable,
    /// `network_down`.
    NetworkDown,
    /// `timed_out`: the kernel gave up (ETIMEDOUT).
    TimedOut,
    /// `generic_timeout_error`: our own deadline expired.
    GenericTimeout,
    /// `eof_error`: the peer closed the connection early.
    Eof,
    /// `interrupted`: the operation was cancelled.
    Interrupted,
    /// `permission_denied`.
    PermissionDenied,
    /// `address_in_use`, `address_not_available` and similar.
    AddressNotAvailable,
    /// `dns_nxdomain_error`.
    DnsNxdomain,
    /// `dns_no_answer`: a good reply without records of the queried type.
    DnsNoAnswer,
    /// `dns_refused_error`.
    DnsRefused,
    /// `dns_servfail_error`.
    DnsServfail,
    /// `dns_server_misbehaving`: an undecodable or inconsistent reply.
    DnsServerMisbehaving,
    /// `dns_reply_with_wrong_query_id`.
    DnsWrongQueryId,
    /// `dns_temporary_failure` (getaddrinfo EAI_AGAIN).
    DnsTemporaryFailure,
    /// `dns_non_recoverable_failure` (getaddrinfo EAI_FAIL).
    DnsNonRecoverableFailure,
    /// `ssl_invalid_hostname`: the certificate is not valid for the name.
    SslInvalidHostname,
    /// `ssl_unknown_authority`: the chain does not reach a trusted root.
    SslUnknownAuthority,
    /// `ssl_invalid_certificate`: expired or otherwise invalid.
    SslInvalidCertificate,
    /// `ssl_failed_handshake`: any other TLS handshake failure.
    SslFailedHandshake,
    /// `http_invalid_redirect_location_host`: a Location without a host.
    HttpInvalidRedirectLocationHost,
    /// `http_request_failed`: the response could not be parsed.
    HttpRequestFailed,
    /// `x_probe_resource_limit` (ours, not OONI's): the step never ran, or
    /// was given up, because of a limit of this probe (a full lookup pool,
    /// too many stuck calls). Never a network failure, never evidence.
    ProbeResourceLimit,
    /// `unknown_failure: <msg>` for anything else.
    Unknown(String),
}

impl Failure {
    /// The OONI string for this failure.
    pub fn as_str(&self) -> std::borrow::Cow<'_, str> {
        use std::borrow::Cow::Borrowed;
        match self {
            Failure::ConnectionRefused => Borrowed("connection_refused"),
            Failure::ConnectionReset => Borrowed("connection_reset"),
            Failure::ConnectionAborted => Borrowed("connection_aborted"),
            Failure::HostUnreachable => Borrowed("host_unreachable"),
            Failure::NetworkUnreachable => Borrowed("network_unreachable"),
            Failure::NetworkDown => Borrowed("network_down"),
            Failure::TimedOut => Borrowed("timed_out"),
            Failure::GenericTimeout => Borrowed("generic_timeout_error"),
            Failure::Eof => Borrowed("eof_error"),
            Failure::Interrupted => Borrowed("interrupted"),
            Failure::PermissionDenied => Borrowed("permission_denied"),
            Failure::AddressNotAvailable => Borrowed("address_not_available"),
            Failure::DnsNxdomain => Borrowed("dns_nxdomain_error"),
            Failure::DnsNoAnswer => Borrowed("dns_no_answer"),
            Failure::DnsRefused => Borrowed("dns_refused_error"),
            Failure::DnsServfail => Borrowed("dns_servfail_error"),
            Failure::DnsServerMisbehaving => Borrowed("dns_server_misbehaving"),
            Failure::DnsWrongQueryId => Borrowed("dns_reply_with_wrong_query_id"),
            Failure::DnsTemporaryFailure => Borrowed("dns_temporary_failure"),
            Failure::DnsNonRecoverableFailure => Borrowed("dns_non_recoverable_failure"),
            Failure::SslInvalidHostname => Borrowed("ssl_invalid_hostname"),
            Failure::SslUnknownAuthority => Borrowed("ssl_unknown_authority"),
            Failure::SslInvalidCertificate => Borrowed("ssl_invalid_certificate"),
            Failure::SslFailedHandshake => Borrowed("ssl_failed_handshake"),
            Failure::HttpInvalidRedirectLocationHost => {
                Borrowed("http_invalid_redirect_location_host")
            }
            Failure::HttpRequestFailed => Borrowed("http_request_failed"),
            Failure::ProbeResourceLimit => Borrowed("x_probe_resource_limit"),
            Failure::Unknown(m) => std::borrow::Cow::Owned(format!("unknown_failure: {m}")),
        }
    }

    /// Parses an OONI failure string; anything unrecognised becomes
    /// [`Failure::Unknown`] with the text kept.
    pub fn parse(s: &str) -> Failure {
        let known = [
            Failure::ConnectionRefused,
            Failure::ConnectionReset,
            Failure::ConnectionAborted,
            Failure::HostUnreachable,
            Failure::NetworkUnreachable,
            Failure::NetworkDown,
            Failure::TimedOut,
            Failure::GenericTimeout,
            Failure::Eof,
            Failure::Interrupted,
            Failure::PermissionDenied,
            Failure::AddressNotAvailable,
            Failure::DnsNxdomain,
            Failure::DnsNoAnswer,
            Failure::DnsRefused,
            Failure::DnsServfail,
            Failure::DnsServerMisbehaving,
            Failure::DnsWrongQueryId,
            Failure::DnsTemporaryFailure,
            Failure::DnsNonRecoverableFailure,
            Failure::SslInvalidHostname,
            Failure::SslUnknownAuthority,
            Failure::SslInvalidCertificate,
            Failure::SslFailedHandshake,
            Failure::HttpInvalidRedirectLocationHost,
            Failure::HttpRequestFailed,
            Failure::ProbeResourceLimit,
        ];
        for f in known {
            if f.as_str() == s {
                return f;
            }
        }
        Failure::Unknown(s.strip_prefix("unknown_failure: ").unwrap_or(s).to_string())
    }

    /// Maps an I/O error (from connect, read or write) to a failure.
    pub fn from_io(e: &io::Error) -> Failure {
        use io::ErrorKind as K;
        match e.kind() {
            K::ConnectionRefused => Failure::ConnectionRefused,
            K::ConnectionReset => Failure::ConnectionReset,
            K::ConnectionAborted => Failure::ConnectionAborted,
            K::HostUnreachable => Failure::HostUnreachable,
            K::NetworkUnreachable => Failure::NetworkUnreachable,
            K::NetworkDown => Failure::NetworkDown,
            K::TimedOut => Failure::TimedOut,
            K::UnexpectedEof | K::BrokenPipe => Failure::Eof,
            K::PermissionDenied => Failure::PermissionDenied,
            K::AddrNotAvailable | K::AddrInUse => Failure::AddressNotAvailable,
            K::Interrupted => Failure::Interrupted,
            _ => match e.raw_os_error() {
                Some(libc::EHOSTUNREACH) => Failure::HostUnreachable,
                Some(libc::ENETUNREACH) => Failure::NetworkUnreachable,
                Some(libc::ECONNRESET) => Failure::ConnectionReset,
                Some(libc::ECONNREFUSED) => Failure::ConnectionRefused,
                _ => Failure::Unknown(e.to_string()),
            },
        }
    }

    /// Maps a rustls error (from the handshake or the verifier).
    ///
    /// Unknown issuer → `ssl_unknown_authority`; name mismatch (or an
    /// `unrecognized_name` alert) → `ssl_invalid_hostname`; any other
    /// certificate error (expired, not yet valid, bad signature, ...) →
    /// `ssl_invalid_certificate`; everything else → `ssl_failed_handshake`.
    pub fn from_rustls(e: &rustls::Error) -> Failure {
        use rustls::{AlertDescription, CertificateError as C, Error as E};
        match e {
            E::InvalidCertificate(C::UnknownIssuer) => Failure::SslUnknownAuthority,
            E::InvalidCertificate(C::NotValidForName | C::NotValidForNameContext { .. }) => {
                Failure::SslInvalidHostname
            }
            E::InvalidCertificate(_) => Failure::SslInvalidCertificate,
            E::AlertReceived(AlertDescription::UnrecognisedName) => Failure::SslInvalidHostname,
            _ => Failure::SslFailedHandshake,
        }
    }

    /// `x_certificate_reason` for an expired certificate.
    pub const REASON_EXPIRED: &'static str = "expired";
    /// `x_certificate_reason` for a certificate not yet valid.
    pub const REASON_NOT_YET_VALID: &'static str = "not_yet_valid";

    /// The finer reason behind a certificate failure, as recorded in
    /// `x_certificate_reason`: `expired`, `not_yet_valid`,
    /// `unknown_issuer`, `name_mismatch`, `revoked`, `bad_signature`,
    /// `bad_encoding`, `other`; `None` for errors that are not about the
    /// certificate.
    pub fn certificate_reason(e: &rustls::Error) -> Option<&'static str> {
        use rustls::{CertificateError as C, Error as E};
        let E::InvalidCertificate(c) = e else {
            return None;
        };
        Some(match c {
            C::Expired | C::ExpiredContext { .. } => Failure::REASON_EXPIRED,
            C::NotValidYet | C::NotValidYetContext { .. } => Failure::REASON_NOT_YET_VALID,
            C::UnknownIssuer => "unknown_issuer",
            C::NotValidForName | C::NotValidForNameContext { .. } => "name_mismatch",
            C::Revoked => "revoked",
            C::BadSignature => "bad_signature",
            C::BadEncoding => "bad_encoding",
            _ => "other",
        })
    }

    /// Maps an I/O error from a TLS stream: a wrapped rustls error is
    /// classified with [`Failure::from_rustls`], an early close is
    /// `eof_error`, the rest as [`Failure::from_io`].
    pub fn from_tls_io(e: &io::Error) -> Failure {
        if let Some(inner) = e.get_ref().and_then(|i| i.downcast_ref::<rustls::Error>()) {
            return Failure::from_rustls(inner);
        }
        Failure::from_io(e)
    }

    /// Maps a hyper error: an I/O cause as [`Failure::from_io`] (a wrapped
    /// rustls error as [`Failure::from_rustls`]), a message cut short by
    /// the peer → `eof_error`, a timeout → `generic_timeout_error`, an
    /// unparseable response → `http_request_failed`.
    pub fn from_hyper(e: &hyper::Error) -> Failure {
        let mut source: Option<&(dyn std::error::Error + 'static)> = std::error::Error::source(e);
        while let Some(s) = source {
            if let Some(io) = s.downcast_ref::<io::Error>() {
                return Failure::from_tls_io(io);
            }
            if let Some(tls) = s.downcast_ref::<rustls::Error>() {
                return Failure::from_rustls(tls);
            }
            source = s.source();
        }
        if e.is_incomplete_message() {
            Failure::Eof
        } else if e.is_timeout() {
            Failure::GenericTimeout
        } else if e.is_parse() || e.is_parse_status() || e.is_parse_too_large() {
            Failure::HttpRequestFailed
        } else if e.is_canceled() || e.is_closed() {
            Failure::Eof
        } else {
            Failure::Unknown(e.to_string())
        }
    }

    /// Maps a DNS response code (numeric, RFC 1035/6895) to the failure it
    /// means; `None` for NOERROR. NOERROR without answers is
    /// `dns_no_answer`, which the caller decides.
    pub fn from_rcode(rcode: u16) -> Option<Failure> {
        match rcode {
            0 => None,
            1 => Some(Failure::DnsServerMisbehaving), // FORMERR
            2 => Some(Failure::DnsServfail),
            3 => Some(Failure::DnsNxdomain),
            5 => Some(Failure::DnsRefused),
            other => Some(Failure::Unknown(format!("dns rcode {other}"))),
        }
    }

    /// True for the failures that a TLS certificate check produces.
    pub fn is_certificate_error(&self) -> bool {
        matches!(
            self,
            Failure::SslInvalidHostname
                | Failure::SslUnknownAuthority
                | Failure::SslInvalidCertificate
        )
    }

    /// True for DNS failures.
    pub fn is_dns(&self) -> bool {
        self.as_str().starts_with("dns_")
    }

    /// This failure in the legacy web-connectivity test helper's
    /// `tcp_connect` vocabulary: `connection_refused_error`,
    /// `generic_timeout_error`, else `connect_error`.
    pub fn helper_tcp(&self) -> &'static str {
        match self {
            Failure::ConnectionRefused => "connection_refused_error",
            Failure::GenericTimeout | Failure::TimedOut => "generic_timeout_error",
            _ => "connect_error",
        }
    }

    /// This failure in the legacy test helper's DNS vocabulary: NXDOMAIN →
    /// `dns_name_error`; no answer → no failure; refused, servfail,
    /// misbehaving or temporary → `dns_server_failure`; our own lookup
    /// limit → `x_probe_resource_limit` (not the site's DNS failing: say
    /// so); anything else → `unknown_error`.
    pub fn helper_dns(&self) -> Option<&'static str> {
        Some(match self {
            Failure::DnsNxdomain => "dns_name_error",
            Failure::DnsNoAnswer => return None,
            Failure::DnsRefused
            | Failure::DnsServfail
            | Failure::DnsServerMisbehaving
            | Failure::DnsTemporaryFailure
            | Failure::DnsNonRecoverableFailure => "dns_server_failure",
            Failure::ProbeResourceLimit => "x_probe_resource_limit",
            _ => "unknown_error",
        })
    }

    /// This failure in the legacy test helper's `http_request` vocabulary:
    /// any DNS failure is `dns_lookup_error`; `generic_timeout_error`,
    /// `connection_refused_error`; else `unknown_error`.
    pub fn helper_http(&self) -> &'static str {
        if self.is_dns() {
            return "dns_lookup_error";
        }
        match self {
            Failure::GenericTimeout | Failure::TimedOut => "generic_timeout_error",
            Failure::ConnectionRefused => "connection_refused_error",
            _ => "unknown_error",
        }
    }
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.as_str())
    }
}

impl Serialize for Failure {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.as_str())
    }
}

impl<'de> Deserialize<'de> for Failure {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        Ok(Failure::parse(&s))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_through_strings() {
        for s in [
            "connection_reset",
            "dns_nxdomain_error",
            "ssl_unknown_authority",
        ] {
            assert_eq!(Failure::parse(s).as_str(), s);
        }
        let u = Failure::parse("unknown_failure: boom");
        assert_eq!(u, Failure::Unknown("boom".into()));
        assert_eq!(u.to_string(), "unknown_failure: boom");
    }

    #[test]
    fn maps_io_kinds() {
        let e = io::Error::from(io::ErrorKind::ConnectionRefused);
        assert_eq!(Failure::from_io(&e), Failure::ConnectionRefused);
        let e = io::Error::from_raw_os_error(libc::EHOSTUNREACH);
        assert_eq!(Failure::from_io(&e), Failure::HostUnreachable);
    }

    #[test]
    fn maps_tls_errors() {
        use rustls::{CertificateError as C, Error as E};
        let wrapped = io::Error::new(
            io::ErrorKind::InvalidData,
            E::InvalidCertificate(C::UnknownIssuer),
        );
        assert_eq!(Failure::from_tls_io(&wrapped), Failure::SslUnknownAuthority);
        assert_eq!(
            Failure::from_rustls(&E::InvalidCertificate(C::Expired)),
            Failure::SslInvalidCertificate
        );
        assert_eq!(
            Failure::from_rustls(&E::InvalidCertificate(C::NotValidForName)),
            Failure::SslInvalidHostname
        );
        assert_eq!(
            Failure::from_rustls(&E::HandshakeNotComplete),
            Failure::SslFailedHandshake
        );
        assert_eq!(
            Failure::certificate_reason(&E::InvalidCertificate(C::Expired)),
            Some("expired")
        );
        assert_eq!(
            Failure::certificate_reason(&E::InvalidCertificate(C::NotValidYet)),
            Some("not_yet_valid")
        );
        assert_eq!(
            Failure::certificate_reason(&E::InvalidCertificate(C::UnknownIssuer)),
            Some("unknown_issuer")
        );
        assert_eq!(Failure::certificate_reason(&E::HandshakeNotComplete), None);
        let eof = io::Error::from(io::ErrorKind::UnexpectedEof);
        assert_eq!(Failure::from_tls_io(&eof), Failure::Eof);
    }

    #[test]
    fn maps_rcodes() {
        assert_eq!(Failure::from_rcode(0), None);
        assert_eq!(Failure::from_rcode(2), Some(Failure::DnsServfail));
        assert_eq!(Failure::from_rcode(3), Some(Failure::DnsNxdomain));
        assert_eq!(Failure::from_rcode(5), Some(Failure::DnsRefused));
    }

    #[test]
    fn legacy_helper_words() {
        let cases = [
            (
                Failure::ConnectionRefused,
                "connection_refused_error",
                "connection_refused_error",
            ),
            (
                Failure::GenericTimeout,
                "generic_timeout_error",
                "generic_timeout_error",
            ),
            (
                Failure::TimedOut,
                "generic_timeout_error",
                "generic_timeout_error",
            ),
            (Failure::ConnectionReset, "connect_error", "unknown_error"),
            (
                Failure::SslUnknownAuthority,
                "connect_error",
                "unknown_error",
            ),
            (Failure::DnsNxdomain, "connect_error", "dns_lookup_error"),
            (Failure::Eof, "connect_error", "unknown_error"),
        ];
        for (f, tcp, http) in cases {
            assert_eq!((f.helper_tcp(), f.helper_http()), (tcp, http), "{f}");
        }
        assert_eq!(Failure::DnsNxdomain.helper_dns(), Some("dns_name_error"));
        assert_eq!(Failure::DnsNoAnswer.helper_dns(), None);
        assert_eq!(
            Failure::DnsServfail.helper_dns(),
            Some("dns_server_failure")
        );
        assert_eq!(Failure::GenericTimeout.helper_dns(), Some("unknown_error"));
    }
}
