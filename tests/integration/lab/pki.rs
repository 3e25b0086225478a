//! The lab's certificates, generated per run with rcgen: a lab CA the probe
//! and the control trust (`--ca-file`), and a censor CA nobody trusts (the
//! TLS-interception box signs with it).

use std::path::Path;
use std::sync::Arc;

use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DistinguishedName, DnType, IsCa, KeyPair,
    KeyUsagePurpose,
};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use rustls::ServerConfig;

/// The lab's trust material.
pub struct Pki {
    /// The lab CA certificate (PEM): write it where `--ca-file` can read it.
    pub ca_pem: String,
    /// The lab CA certificate (DER), for in-test clients.
    pub ca_der: CertificateDer<'static>,
    /// TLS server config of the genuine sites (leaf signed by the lab CA).
    pub sites: Arc<ServerConfig>,
    /// TLS server config of the interception box (leaf signed by the
    /// untrusted censor CA, for the same names).
    pub mitm: Arc<ServerConfig>,
}

impl Pki {
    /// Generates both CAs and a leaf for `names` from each.
    pub fn generate(names: &[String]) -> Pki {
        probes::install_crypto_provider();
        let (ca_pem, ca_der, sites) = chain("gatewatch lab CA", names);
        let (_, _, mitm) = chain("ISP inspection CA (untrusted)", names);
        Pki {
            ca_pem,
            ca_der,
            sites,
            mitm,
        }
    }

    /// Writes the lab CA to `dir/lab-ca.pem` and returns that path.
    pub fn write_ca(&self, dir: &Path) -> std::io::Result<std::path::PathBuf> {
        let p = dir.join("lab-ca.pem");
        std::fs::write(&p, &self.ca_pem)?;
        Ok(p)
    }
}

fn chain(ca_name: &str, names: &[String]) -> (String, CertificateDer<'static>, Arc<ServerConfig>) {
    let mut ca = CertificateParams::new(Vec::<String>::new()).expect("ca params");
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, ca_name);
    ca.distinguished_name = dn;
    let ca = CertifiedIssuer::self_signed(ca, KeyPair::generate().expect("ca key")).expect("ca");

    let mut leaf = CertificateParams::new(names.to_vec()).expect("leaf params");
    // A real site's window (as Let's Encrypt's, 90 days), so that a probe
    // whose clock is off by days or years sees it expired or not yet valid.
    let now = time::OffsetDateTime::now_utc();
    leaf.not_before = now - time::Duration::days(30);
    leaf.not_after = now + time::Duration::days(60);
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, "lab site");
    leaf.distinguished_name = dn;
    let key = KeyPair::generate().expect("leaf key");
    let cert = leaf.signed_by(&key, &ca).expect("leaf");

    let chain: Vec<CertificateDer<'static>> = vec![cert.der().clone(), ca.der().clone()];
    let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der()));
    let mut cfg = ServerConfig::builder()
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .expect("server config");
    cfg.alpn_protocols = vec![b"http/1.1".to_vec()];
    (ca.pem(), ca.der().clone(), Arc::new(cfg))
}
