//! Where the probe is: ASN, network name and country from MaxMind-format
//! databases (GeoLite2/DB-IP `.mmdb`), applied to the public address the
//! control reports back. The address itself is only looked up, never kept.

use std::net::IpAddr;
use std::path::{Path, PathBuf};

use maxminddb::{geoip2, Reader};

/// `probe_asn` when the network is unknown.
pub const UNKNOWN_ASN: &str = "AS0";
/// `probe_cc` when the country is unknown.
pub const UNKNOWN_CC: &str = "ZZ";

/// A database could not be opened.
#[derive(Debug, thiserror::Error)]
#[error("cannot open the {what} database {path}: {reason}")]
pub struct GeoError {
    /// `ASN` or `country`.
    pub what: &'static str,
    /// The file.
    pub path: PathBuf,
    /// What was wrong.
    pub reason: String,
}

/// The probe's network and country, as written into each measurement.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProbeLocation {
    /// `AS<n>`, [`UNKNOWN_ASN`] when unknown.
    pub asn: String,
    /// ISO 3166-1 alpha-2, [`UNKNOWN_CC`] when unknown.
    pub cc: String,
    /// The AS organisation, when known.
    pub network_name: Option<String>,
}

impl Default for ProbeLocation {
    fn default() -> Self {
        ProbeLocation {
            asn: UNKNOWN_ASN.to_string(),
            cc: UNKNOWN_CC.to_string(),
            network_name: None,
        }
    }
}

/// The optional ASN and country databases.
#[derive(Default)]
pub struct GeoDb {
    asn: Option<Reader<Vec<u8>>>,
    country: Option<Reader<Vec<u8>>>,
}

impl std::fmt::Debug for GeoDb {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GeoDb")
            .field("asn", &self.asn.is_some())
            .field("country", &self.country.is_some())
            .finish()
    }
}

impl GeoDb {
    /// Opens whichever databases are given (neither is required).
    pub fn open(asn: Option<&Path>, country: Option<&Path>) -> Result<GeoDb, GeoError> {
        let open = |what: &'static str, p: &Path| {
            Reader::open_readfile(p).map_err(|e| GeoError {
                what,
                path: p.to_path_buf(),
                reason: e.to_string(),
            })
        };
        Ok(GeoDb {
            asn: asn.map(|p| open("ASN", p)).transpose()?,
            country: country.map(|p| open("country", p)).transpose()?,
        })
    }

    /// True when at least one database is loaded.
    pub fn is_loaded(&self) -> bool {
        self.asn.is_some() || self.country.is_some()
    }

    /// The ASN of `ip`, when the ASN database knows it.
    pub fn asn(&self, ip: IpAddr) -> Option<u32> {
        let r = self.asn.as_ref()?;
        r.lookup(ip)
            .and_then(|l| l.decode::<geoip2::Asn<'_>>())
            .ok()
            .flatten()
            .and_then(|a| a.autonomous_system_number)
    }

    /// Looks `ip` up; anything missing stays unknown. A country database of
    /// the City flavour works too (it shares the `country` record).
    pub fn lookup(&self, ip: IpAddr) -> ProbeLocation {
        let mut loc = ProbeLocation::default();
        if let Some(r) = &self.asn {
            if let Ok(Some(rec)) = r.lookup(ip).and_then(|l| l.decode::<geoip2::Asn<'_>>()) {
                if let Some(n) = rec.autonomous_system_number {
                    loc.asn = format!("AS{n}");
                }
                loc.network_name = rec.autonomous_system_organization.map(str::to_string);
            }
        }
        if let Some(r) = &self.country {
            if let Ok(Some(rec)) = r.lookup(ip).and_then(|l| l.decode::<geoip2::Country<'_>>()) {
                if let Some(cc) = rec.country.iso_code.or(rec.registered_country.iso_code) {
                    loc.cc = cc.to_ascii_uppercase();
                }
            }
        }
        loc
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn no_database_means_unknown() {
        let db = GeoDb::open(None, None).unwrap();
        assert!(!db.is_loaded());
        let loc = db.lookup("192.0.2.1".parse().unwrap());
        assert_eq!(loc.asn, "AS0");
        assert_eq!(loc.cc, "ZZ");
        assert_eq!(loc.network_name, None);
    }

    #[test]
    fn a_file_that_is_not_a_database_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("x.mmdb");
        std::fs::write(&p, b"not a database").unwrap();
        let e = GeoDb::open(Some(&p), None).unwrap_err();
        assert_eq!(e.what, "ASN");
        assert!(e.to_string().contains("x.mmdb"), "{e}");
    }
}
