//! The lab's network: five namespaces, documentation addresses only, no
//! link to the host and no default route anywhere.
//!
//! ```text
//!  probe ──── r1 ──── censor ──── internet ──── control
//!  .18   .17/.33   .34/.49     .50 (192.0.2.x)  198.51.100.10
//!                  ISP resolver 192.0.2.53      sites 203.0.113.10..
//!                  sinkhole 203.0.113.250       public resolver 198.51.100.53
//!  2001:db8:1::18 ─ ::17  2001:db8:2::33 ─ ::34  2001:db8:3::49 ─ ::50
//!                         (sites 2001:db8:203::/48)  2001:db8:4::1 ─ ::10
//! ```
//!
//! Dual stack: every link also has IPv6 (documentation prefix, see
//! [`addr6`]); the resolvers stay on IPv4 and answer AAAA for the sites a
//! world gives an IPv6 address (`World::start_dual_or_skip`).
//!
//! The censor is the second router hop from the probe (r1 is hop 1), so a
//! TTL-limited trace must localise interference at hop 2. The control is on
//! the internet side: its traffic to the sites never crosses the censor.

use std::io;
use std::net::Ipv4Addr;

use super::netns::{Lab, Ns};

/// The lab's fixed addresses and ports.
pub mod addr {
    use std::net::Ipv4Addr;

    /// The probe (its only interface, towards r1).
    pub const PROBE: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 18);
    /// r1 towards the probe: the probe's gateway, hop 1.
    pub const R1_DOWN: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 17);
    /// r1 towards the censor.
    pub const R1_UP: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 33);
    /// The censor towards r1: hop 2.
    pub const CENSOR_DOWN: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 34);
    /// The censor towards the internet.
    pub const CENSOR_UP: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 49);
    /// The internet namespace towards the censor: hop 3.
    pub const INTERNET_DOWN: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 50);
    /// The ISP's resolver (lies), in the censor namespace.
    pub const ISP_RESOLVER: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 53);
    /// The censor's blockpage server, reachable as a public-looking address.
    pub const SINKHOLE: Ipv4Addr = Ipv4Addr::new(203, 0, 113, 250);
    /// The censor's transparent proxy (a diverted name leads here).
    pub const PROXY: Ipv4Addr = Ipv4Addr::new(203, 0, 113, 249);
    /// An honest public resolver in the internet namespace (the probe's
    /// `--resolver`; queries to it cross the censor).
    pub const PUBLIC_RESOLVER: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 53);
    /// The internet namespace towards the control.
    pub const INTERNET_CTL: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 1);
    /// The control server.
    pub const CONTROL: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 10);
    /// The control server's port.
    pub const CONTROL_PORT: u16 = 9000;
    /// An address on the internet side that no namespace owns or routes (an
    /// unreachable control: the internet router answers ICMP unreachable).
    pub const BLACKHOLE: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 99);
    /// In the censor: the TLS-interception box (nft redirects :443 here).
    pub const MITM_PORT: u16 = 8443;
    /// In the censor: the blockpage server for redirected :80.
    pub const BLOCKPAGE_PORT: u16 = 8080;
    /// In the censor: the box that closes after the request.
    pub const EOF_PORT: u16 = 8081;
    /// In the censor: the look-alike blockpage box (a short 200 page from
    /// the sites' own server software).
    pub const LOOKALIKE_PORT: u16 = 8082;
    /// In the censor: the notice box (a 200 page with no blocking words).
    pub const NOTICE_PORT: u16 = 8083;
    /// The ranges the probe and the control must treat as public.
    pub const PUBLIC_RANGES: [&str; 3] = ["198.51.100.0/24", "203.0.113.0/24", "2001:db8::/32"];
}

/// The lab's IPv6 addresses (documentation prefix 2001:db8::/32), added by
/// [`Topology::add_ipv6`] to every lab: one /64 per link, the sites in 2001:db8:203::/48.
pub mod addr6 {
    use std::net::Ipv6Addr;

    const fn a(net: u16, host: u16) -> Ipv6Addr {
        Ipv6Addr::new(0x2001, 0xdb8, net, 0, 0, 0, 0, host)
    }
    /// The probe.
    pub const PROBE: Ipv6Addr = a(1, 0x18);
    /// r1 towards the probe (hop 1).
    pub const R1_DOWN: Ipv6Addr = a(1, 0x17);
    /// r1 towards the censor.
    pub const R1_UP: Ipv6Addr = a(2, 0x33);
    /// The censor towards r1 (hop 2).
    pub const CENSOR_DOWN: Ipv6Addr = a(2, 0x34);
    /// The censor towards the internet.
    pub const CENSOR_UP: Ipv6Addr = a(3, 0x49);
    /// The internet towards the censor (hop 3).
    pub const INTERNET_DOWN: Ipv6Addr = a(3, 0x50);
    /// The internet towards the control.
    pub const INTERNET_CTL: Ipv6Addr = a(4, 0x1);
    /// The control server.
    pub const CONTROL: Ipv6Addr = a(4, 0x10);
    /// Where the sites' IPv6 addresses are (see `scenarios::site_ip6`).
    pub const SITES: &str = "2001:db8:203::/48";
    /// The whole lab.
    pub const ALL: &str = "2001:db8::/32";
}

/// The MTU of every lab link (see [`Topology::build`]).
pub const LINK_MTU: u32 = 1500;

/// The censor's interface towards the probe (tc shapes here).
pub const CENSOR_DOWN_IF: &str = "down0";

/// The five namespaces, wired and routed.
pub struct Topology {
    /// Where `gatewatch run` runs.
    pub probe: Ns,
    /// The ISP's first router (hop 1), innocent.
    pub r1: Ns,
    /// The ISP's second router (hop 2): the censor, the ISP resolver and the
    /// censor's boxes live here.
    pub censor: Ns,
    /// The sites and the public resolver.
    pub internet: Ns,
    /// The control server.
    pub control: Ns,
}

impl Topology {
    /// Makes the lab dual-stack (done by [`Topology::build`]): an IPv6 address from [`addr6`] on both ends
    /// of every link (no duplicate-address wait), IPv6 forwarding in the
    /// routers and routes to 2001:db8::/32 only (still no default route).
    pub fn add_ipv6(&self) -> io::Result<()> {
        use addr6::*;
        let on = |ns: &Ns, dev: &str, a: std::net::Ipv6Addr| {
            ns.ip(&["-6", "addr", "add", &format!("{a}/64"), "dev", dev, "nodad"])
                .map(drop)
        };
        on(&self.probe, "up0", PROBE)?;
        on(&self.r1, "down0", R1_DOWN)?;
        on(&self.r1, "up0", R1_UP)?;
        on(&self.censor, CENSOR_DOWN_IF, CENSOR_DOWN)?;
        on(&self.censor, "up0", CENSOR_UP)?;
        on(&self.internet, "down0", INTERNET_DOWN)?;
        on(&self.internet, "ctl0", INTERNET_CTL)?;
        on(&self.control, "up0", CONTROL)?;
        for r in [&self.r1, &self.censor, &self.internet] {
            r.sh("echo 1 > /proc/sys/net/ipv6/conf/all/forwarding")?;
        }
        self.probe.add_route(ALL, &R1_DOWN.to_string())?;
        self.r1.add_route(ALL, &CENSOR_DOWN.to_string())?;
        self.control.add_route(ALL, &INTERNET_CTL.to_string())?;
        self.censor
            .add_route("2001:db8:1::/64", &R1_UP.to_string())?;
        self.censor.add_route(SITES, &INTERNET_DOWN.to_string())?;
        self.censor
            .add_route("2001:db8:4::/64", &INTERNET_DOWN.to_string())?;
        self.internet
            .add_route("2001:db8:1::/64", &CENSOR_UP.to_string())?;
        self.internet
            .add_route("2001:db8:2::/64", &CENSOR_UP.to_string())?;
        Ok(())
    }

    /// Creates and wires the namespaces in `lab`.
    pub fn build(lab: &Lab) -> io::Result<Topology> {
        use addr::*;
        let probe = lab.add_ns("probe")?;
        let r1 = lab.add_ns("r1")?;
        let censor = lab.add_ns("censor")?;
        let internet = lab.add_ns("internet")?;
        let control = lab.add_ns("control")?;
        let c29 = |a: Ipv4Addr| format!("{a}/29");
        lab.link(&probe, "up0", &c29(PROBE), &r1, "down0", &c29(R1_DOWN))?;
        lab.link(
            &r1,
            "up0",
            &c29(R1_UP),
            &censor,
            CENSOR_DOWN_IF,
            &c29(CENSOR_DOWN),
        )?;
        lab.link(
            &censor,
            "up0",
            &c29(CENSOR_UP),
            &internet,
            "down0",
            &c29(INTERNET_DOWN),
        )?;
        lab.link(
            &internet,
            "ctl0",
            &format!("{INTERNET_CTL}/28"),
            &control,
            "up0",
            &format!("{CONTROL}/28"),
        )?;
        // A real MTU, as the field has: the probe's ClientHello must put the
        // name in one segment by itself (probes::hello), not thanks to the
        // lab's links.
        for (ns, devs) in [
            (&probe, &["up0"][..]),
            (&r1, &["down0", "up0"][..]),
            (&censor, &[CENSOR_DOWN_IF, "up0"][..]),
            (&internet, &["down0", "ctl0"][..]),
            (&control, &["up0"][..]),
        ] {
            for dev in devs {
                ns.set_mtu(dev, LINK_MTU)?;
            }
        }
        for r in [&r1, &censor, &internet] {
            r.enable_forwarding()?;
        }
        let all = ["192.0.2.0/24", "198.51.100.0/24", "203.0.113.0/24"];
        for dst in all {
            probe.add_route(dst, &R1_DOWN.to_string())?;
            r1.add_route(dst, &CENSOR_DOWN.to_string())?;
            control.add_route(dst, &INTERNET_CTL.to_string())?;
        }
        censor.add_route("192.0.2.16/29", &R1_UP.to_string())?;
        censor.add_route("198.51.100.0/24", &INTERNET_DOWN.to_string())?;
        censor.add_route("203.0.113.0/24", &INTERNET_DOWN.to_string())?;
        internet.add_route("192.0.2.0/24", &CENSOR_UP.to_string())?;
        internet.add_route(&format!("{SINKHOLE}/32"), &CENSOR_UP.to_string())?;
        // The control's link is a finite 50 Mbit/s, as real ones are. On an
        // unshaped veth a 160 KiB page arrives in well under the 10 ms the
        // probes need to measure a transfer rate at all, and the throttling
        // verdict compares the probe's rate with the control's.
        internet.exec(
            "tc",
            &[
                "qdisc", "add", "dev", "ctl0", "root", "handle", "1:", "htb", "default", "1",
            ],
        )?;
        internet.exec(
            "tc",
            &[
                "class", "add", "dev", "ctl0", "parent", "1:", "classid", "1:1", "htb", "rate",
                "50mbit",
            ],
        )?;
        censor.add_addr("lo", &format!("{ISP_RESOLVER}/32"))?;
        censor.add_addr("lo", &format!("{SINKHOLE}/32"))?;
        censor.add_addr("lo", &format!("{PROXY}/32"))?;
        internet.add_addr("lo", &format!("{PUBLIC_RESOLVER}/32"))?;
        // Processes started in a namespace resolve like its hosts would.
        probe.set_resolv_conf(&ISP_RESOLVER.to_string())?;
        control.set_resolv_conf(&PUBLIC_RESOLVER.to_string())?;
        let topo = Topology {
            probe,
            r1,
            censor,
            internet,
            control,
        };
        topo.add_ipv6()?;
        Ok(topo)
    }
}
