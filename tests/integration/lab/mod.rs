//! The network-namespace censorship lab (root only; skips itself otherwise).
//!
//! - [`netns`]: the reusable namespace API (create, link, route, exec,
//!   spawn, in-namespace servers, a guard that deletes everything).
//! - `netns_selftest`: tests of that API.

// A reusable API: not every test binary build uses every item.
#[allow(dead_code)]
pub mod netns;

mod netns_selftest;
