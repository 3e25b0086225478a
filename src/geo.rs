//! Where the probe is: ASN, network name and country from MaxMind-format
//! databases (GeoLite2/DB-IP `.mmdb`, or ip-location-db's flat
//! `country_code` databases), applied to the public address the control or
//! STUN reports. The address itself is only looked up, never kept.
//! `gatewatch geo update` ([`update`]) fetches DB-IP's free databases into
//! [`default_dir`], where `run` finds them.

pub mod update;

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
            let cc = match r.lookup(ip).and_then(|l| l.decode::<geoip2::Country<'_>>()) {
                Ok(Some(rec)) => rec
                    .country
                    .iso_code
                    .or(rec.registered_country.iso_code)
                    .map(str::to_string),
                _ => None,
            };
            // ip-location-db's databases keep a flat `country_code`.
            let cc = cc.or_else(|| {
                r.lookup(ip)
                    .and_then(|l| l.decode::<FlatCountry>())
                    .ok()
                    .flatten()
                    .and_then(|f| f.country_code)
            });
            if let Some(cc) = cc.filter(|c| c.len() == 2) {
                loc.cc = cc.to_ascii_uppercase();
            }
        }
        loc
    }
}

/// The record of ip-location-db's country databases.
#[derive(serde::Deserialize)]
struct FlatCountry {
    country_code: Option<String>,
}

/// Where `gatewatch geo update` puts the databases and `run` looks for
/// them: `$XDG_DATA_HOME/gatewatch/geo`.
pub fn default_dir() -> Option<PathBuf> {
    crate::run::config::data_dir().map(|d| d.join("geo"))
}

/// The ASN database `run` uses when none is given, if it is there.
pub fn default_asn_db() -> Option<PathBuf> {
    default_dir()
        .map(|d| d.join(update::ASN_FILE))
        .filter(|p| p.is_file())
}

/// The country database `run` uses when none is given, if it is there.
pub fn default_country_db() -> Option<PathBuf> {
    default_dir()
        .map(|d| d.join(update::COUNTRY_FILE))
        .filter(|p| p.is_file())
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

    /// A real database: ip-location-db's CC0 `geo-whois-asn-country` (from
    /// the npm registry; .ci/run fetches it into `GATEWATCH_TEST_MMDB`).
    #[test]
    fn lookup_in_a_real_country_database() {
        let Some(p) = std::env::var_os("GATEWATCH_TEST_MMDB").map(PathBuf::from) else {
            eprintln!("skipped: GATEWATCH_TEST_MMDB (a real country .mmdb) is not set");
            return;
        };
        let db = GeoDb::open(None, Some(&p)).unwrap();
        assert!(db.is_loaded());
        let got: Vec<(&str, String)> = REAL_COUNTRIES
            .iter()
            .map(|(ip, _)| (*ip, db.lookup(ip.parse().unwrap()).cc))
            .collect();
        let want: Vec<(&str, String)> = REAL_COUNTRIES
            .iter()
            .map(|(ip, cc)| (*ip, cc.to_string()))
            .collect();
        assert_eq!(got, want);
        // Special-purpose addresses are in no database.
        for ip in ["192.0.2.1", "10.0.0.1", "127.0.0.1"] {
            assert_eq!(db.lookup(ip.parse().unwrap()).cc, "ZZ", "{ip}");
        }
    }

    /// Addresses whose country is stable in public registries.
    const REAL_COUNTRIES: &[(&str, &str)] = &[
        ("8.8.8.8", "US"),
        ("193.0.6.139", "NL"),
        ("202.79.24.1", "KH"),
        ("2001:67c:2e8::1", "NL"),
    ];

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
