//! The whole lab, started from the scenario table: topology, certificates,
//! DNS, sites, the censor's rules and boxes. Dropping it tears everything
//! down (the [`Lab`] guard).

use std::io;
use std::path::PathBuf;

use super::dns::{self, Zone};
use super::netns::Lab;
use super::pki::Pki;
use super::scenarios::{site_ip, site_ip6, CensorPlan, Scenario, Site};
use super::topology::Topology;
use super::web::{self, SiteSpec};

/// The tools the full lab needs besides `ip`.
pub const TOOLS: &[&str] = &["nft", "iptables", "tc"];

/// A running censorship lab.
pub struct World {
    /// The namespaces (and the guard that deletes them; dropped last).
    pub topo: Topology,
    /// The scenarios this lab serves, in table order.
    pub scenarios: Vec<Scenario>,
    /// The lab CA, written to disk for `--ca-file`.
    pub ca_file: PathBuf,
    /// The lab CA (DER), for in-test clients.
    pub ca_der: rustls::pki_types::CertificateDer<'static>,
    /// A scratch directory for inputs and outputs.
    pub dir: tempfile::TempDir,
    /// What the censor was configured with.
    pub plan: CensorPlan,
    /// The sites' TLS server config (leaf for every scenario's name, signed
    /// by the lab CA), for extra servers such as QUIC.
    pub site_tls: std::sync::Arc<rustls::ServerConfig>,
    /// Owns the namespaces, servers and processes (dropped after the rest).
    pub lab: Lab,
}

impl World {
    /// Starts the lab for `scenarios`, or prints the skip line and returns
    /// `None` when not root or a tool is missing.
    pub fn start_or_skip(scenarios: &[Scenario]) -> Option<World> {
        let lab = Lab::new_or_skip(TOOLS)?;
        Some(World::start(lab, scenarios).expect("start the censorship lab"))
    }

    /// Like [`World::start_or_skip`], and the scenarios named in `v6` also
    /// have an IPv6 address (answered to AAAA, served on :80 and :443).
    pub fn start_dual_or_skip(scenarios: &[Scenario], v6: &[&str]) -> Option<World> {
        let lab = Lab::new_or_skip(TOOLS)?;
        Some(World::start_with(lab, scenarios, Some(v6)).expect("start the dual-stack lab"))
    }

    /// Starts the lab in `lab`.
    pub fn start(lab: Lab, scenarios: &[Scenario]) -> io::Result<World> {
        World::start_with(lab, scenarios, None)
    }

    /// Starts the lab in `lab`; the sites named in `v6` get IPv6 addresses
    /// (see [`World::start_dual_or_skip`]).
    fn start_with(lab: Lab, scenarios: &[Scenario], v6: Option<&[&str]>) -> io::Result<World> {
        let topo = Topology::build(&lab)?;
        let names: Vec<String> = scenarios.iter().map(Scenario::host).collect();
        let pki = Pki::generate(&names);
        let dir = tempfile::tempdir()?;
        let ca_file = pki.write_ca(dir.path())?;
        let plan = CensorPlan::for_scenarios(scenarios);

        // The internet: every site's address, the sites, the honest resolver.
        let mut zone = Zone::default();
        let mut specs = Vec::new();
        for (i, sc) in scenarios.iter().enumerate() {
            let ip = site_ip(i);
            topo.internet.add_addr("lo", &format!("{ip}/32"))?;
            if sc.site != Site::NoSuchName {
                zone.a.insert(sc.host(), ip);
            }
            if sc.site == Site::RedirectToNext {
                zone.a.insert(super::scenarios::next_host(&sc.host()), ip);
            }
            let also = (sc.censor == super::scenarios::Censor::DnsOtherNode)
                .then(|| super::scenarios::second_node(ip));
            if let Some(a) = also {
                topo.internet.add_addr("lo", &format!("{a}/32"))?;
            }
            let ip6 = v6
                .is_some_and(|names| names.contains(&sc.name))
                .then(|| site_ip6(i));
            if let Some(a) = ip6 {
                topo.internet.ip(&[
                    "-6",
                    "addr",
                    "add",
                    &format!("{a}/128"),
                    "dev",
                    "lo",
                    "nodad",
                ])?;
                zone.aaaa.insert(sc.host(), a);
            }
            specs.push(SiteSpec {
                host: sc.host(),
                ip,
                site: sc.site,
                also,
                ip6,
            });
        }
        zone.far = plan.inject.clone();
        lab.keep(dns::public_resolver(&topo.internet, zone)?);
        lab.keep(web::sites(&topo.internet, specs, pki.sites.clone())?);

        // The censor: rules, shaping, the lying resolver, injector, boxes.
        topo.censor.nft(&plan.nft_ruleset())?;
        for args in &plan.iptables {
            topo.censor.exec("iptables", args)?;
        }
        for args in &plan.tc {
            topo.censor.exec("tc", args)?;
        }
        lab.keep(dns::isp_resolver(&topo.censor, plan.lies.clone())?);
        if !plan.inject.is_empty() {
            lab.keep(dns::injector(&topo.censor, plan.inject.clone())?);
        }
        lab.keep(web::censor_boxes(
            &topo.censor,
            pki.mitm.clone(),
            plan.divert_to,
        )?);

        Ok(World {
            topo,
            scenarios: scenarios.to_vec(),
            ca_file,
            ca_der: pki.ca_der.clone(),
            dir,
            plan,
            site_tls: pki.sites.clone(),
            lab,
        })
    }

    /// The IPv6 address of the scenario called `name` (if it has one).
    pub fn find6(&self, name: &str) -> std::net::Ipv6Addr {
        let i = self
            .scenarios
            .iter()
            .position(|s| s.name == name)
            .unwrap_or_else(|| panic!("no scenario {name}"));
        site_ip6(i)
    }

    /// The scenario called `name` and its site address.
    pub fn find(&self, name: &str) -> (Scenario, std::net::Ipv4Addr) {
        let i = self
            .scenarios
            .iter()
            .position(|s| s.name == name)
            .unwrap_or_else(|| panic!("no scenario {name}"));
        (self.scenarios[i], site_ip(i))
    }
}
