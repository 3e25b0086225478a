//! The network-namespace censorship lab (root only; skips itself otherwise).
//! See tests/README.md.
//!
//! - [`netns`]: the reusable namespace API (create, link, route, exec,
//!   spawn, in-namespace servers, a guard that deletes everything).
//! - [`topology`]: probe → r1 → censor → internet (+ control) and its
//!   addresses; [`scenarios`]: the table of mechanisms and traps (the one
//!   place to add one); [`world`]: starts everything from the table.
//! - [`dns`], [`web`], [`pki`]: the lab's servers and certificates.
//! - Tests: `netns_selftest` (the API, cleanup, stale labs), `mechanisms`
//!   (the lab really censors, and leaves the control alone), `e2e` (the
//!   gatewatch binary in the lab: verdicts per scenario, the control server,
//!   an unreachable control, `--trace-blocked` at hop 2, SIGKILL + resume),
//!   `stuck_resolver` (a getaddrinfo that hangs: no false verdict, the run
//!   still exits, also on SIGTERM), `links` (lossy and slow lines: retries,
//!   the line baseline), `quic` (HTTP/3: UDP/443 dropped, QUIC filtered by SNI, and the twins),
//!   `dualstack` (the lab with IPv6: a v6-only block, a host without
//!   IPv6), `netwide` (a probe clock off by days and years; a captive portal).

// Reusable APIs: not every item is used by this crate's tests.
#[allow(dead_code)]
pub mod dns;
#[allow(dead_code)]
pub mod netns;
#[allow(dead_code)]
pub mod pki;
#[allow(dead_code)]
pub mod scenarios;
#[allow(dead_code)]
pub mod topology;
#[allow(dead_code)]
pub mod web;
#[allow(dead_code)]
pub mod world;

mod clusters;
mod diverted;
mod dualstack;
mod e2e;
mod links;
mod mechanisms;
mod mmdb;
mod netns_selftest;
mod netwide;
mod quic;
mod stuck_resolver;
