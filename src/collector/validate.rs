//! What a collector accepts: the checks OONI's backend makes, plus ours.

use serde_json::Value;

/// Why a submission was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ValidationError {
    /// Not a JSON object.
    #[error("the measurement is not a JSON object")]
    NotAnObject,
    /// A required key is missing or has the wrong type.
    #[error("missing or invalid key `{0}`")]
    MissingKey(&'static str),
    /// `probe_cc` is not two upper-case letters.
    #[error("probe_cc {0:?} is not two upper-case letters")]
    BadCountry(String),
    /// `probe_asn` is not `AS<number>`.
    #[error("probe_asn {0:?} is not AS<number>")]
    BadAsn(String),
    /// `test_name` is not at most 30 lower-case characters.
    #[error("test_name {0:?} is not at most 30 lower-case letters, digits or underscores")]
    BadTestName(String),
    /// `probe_ip` would reveal the volunteer's address.
    #[error("probe_ip must be 127.0.0.1 (the probe's address is never collected)")]
    ProbeIpPresent,
    /// `probe_ip` is missing: a measurement must say it carries no address.
    #[error("probe_ip is missing; it must be \"127.0.0.1\"")]
    ProbeIpMissing,
    /// `measurement_start_time` is not a UTC `YYYY-MM-DD HH:MM:SS`.
    #[error("measurement_start_time {0:?} is not a date and time \"YYYY-MM-DD HH:MM:SS\"")]
    BadStartTime(String),
}

/// Checks one measurement's required keys and formats.
pub fn validate_measurement(m: &Value) -> Result<(), ValidationError> {
    let o = m.as_object().ok_or(ValidationError::NotAnObject)?;
    let s = |k: &'static str| {
        o.get(k)
            .and_then(Value::as_str)
            .ok_or(ValidationError::MissingKey(k))
    };
    let cc = s("probe_cc")?;
    if !valid_cc(cc) {
        return Err(ValidationError::BadCountry(cc.to_string()));
    }
    let asn = s("probe_asn")?;
    if !valid_asn(asn) {
        return Err(ValidationError::BadAsn(asn.to_string()));
    }
    let tn = s("test_name")?;
    if !valid_test_name(tn) {
        return Err(ValidationError::BadTestName(tn.to_string()));
    }
    let start = s("measurement_start_time")?;
    if !valid_start_time(start) {
        // Only the start of a garbage value is echoed back.
        let shown: String = start.chars().take(40).collect();
        return Err(ValidationError::BadStartTime(shown));
    }
    s("software_name")?;
    if !o.get("test_keys").is_some_and(Value::is_object) {
        return Err(ValidationError::MissingKey("test_keys"));
    }
    match o.get("input") {
        Some(Value::String(_)) | Some(Value::Null) | None => {}
        Some(_) => return Err(ValidationError::MissingKey("input")),
    }
    match o.get("probe_ip") {
        None | Some(Value::Null) => return Err(ValidationError::ProbeIpMissing),
        Some(ip) if ip.as_str() != Some("127.0.0.1") => {
            return Err(ValidationError::ProbeIpPresent)
        }
        Some(_) => {}
    }
    Ok(())
}

/// `YYYY-MM-DD HH:MM:SS`, a real date and time (OONI's format; it becomes
/// part of the measurement uid).
pub(crate) fn valid_start_time(t: &str) -> bool {
    t.len() == 19
        && time::PrimitiveDateTime::parse(
            t,
            time::macros::format_description!("[year]-[month]-[day] [hour]:[minute]:[second]"),
        )
        .is_ok()
}

/// Two upper-case ASCII letters.
pub(crate) fn valid_cc(cc: &str) -> bool {
    cc.len() == 2 && cc.bytes().all(|b| b.is_ascii_uppercase())
}

/// `AS` followed by a decimal number.
pub(crate) fn valid_asn(asn: &str) -> bool {
    asn.strip_prefix("AS")
        .is_some_and(|n| !n.is_empty() && n.len() <= 10 && n.bytes().all(|b| b.is_ascii_digit()))
}

/// At most 30 of `[a-z0-9_]`.
pub(crate) fn valid_test_name(t: &str) -> bool {
    !t.is_empty()
        && t.len() <= 30
        && t.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn good() -> Value {
        json!({"probe_cc":"KH","probe_asn":"AS38623","test_name":"web_connectivity",
               "measurement_start_time":"2026-11-27 01:02:03","software_name":"gatewatch",
               "probe_ip":"127.0.0.1","input":"https://example.org/","test_keys":{}})
    }

    #[test]
    fn accepts_a_well_formed_measurement() {
        assert_eq!(validate_measurement(&good()), Ok(()));
    }

    #[test]
    fn names_what_is_wrong() {
        let mut m = good();
        m["probe_cc"] = json!("kh");
        assert_eq!(
            validate_measurement(&m),
            Err(ValidationError::BadCountry("kh".into()))
        );
        let mut m = good();
        m["probe_asn"] = json!("38623");
        assert_eq!(
            validate_measurement(&m),
            Err(ValidationError::BadAsn("38623".into()))
        );
        let mut m = good();
        m["test_name"] = json!("Web Connectivity");
        assert!(matches!(
            validate_measurement(&m),
            Err(ValidationError::BadTestName(_))
        ));
        let mut m = good();
        m.as_object_mut().unwrap().remove("test_keys");
        assert_eq!(
            validate_measurement(&m),
            Err(ValidationError::MissingKey("test_keys"))
        );
        let mut m = good();
        m["probe_ip"] = json!("203.0.113.9");
        assert_eq!(
            validate_measurement(&m),
            Err(ValidationError::ProbeIpPresent)
        );
        let mut m = good();
        m.as_object_mut().unwrap().remove("probe_ip");
        assert_eq!(
            validate_measurement(&m),
            Err(ValidationError::ProbeIpMissing)
        );
        for bad in [
            "2026-11-27T01:02:03Z".to_string(),
            "2026-13-27 01:02:03".to_string(),
            "2026-11-27 01:02".to_string(),
            "20261127010203".to_string(),
            "7".repeat(3 * 1024 * 1024),
        ] {
            let mut m = good();
            m["measurement_start_time"] = json!(bad);
            let e = validate_measurement(&m).unwrap_err();
            assert!(matches!(e, ValidationError::BadStartTime(_)), "{e}");
            assert!(e.to_string().len() < 200, "the reason stays short");
        }
        assert_eq!(
            validate_measurement(&json!([1])),
            Err(ValidationError::NotAnObject)
        );
    }
}
