//! Measurement primitives for gatewatch.
//!
//! Each primitive is an async function that performs one network step with
//! real sockets and returns a *record* ([`records`]): a network failure is a
//! [`Failure`] value inside the record, never a panic and never an `Err` the
//! caller must interpret. This crate has no CLI, no policy and no storage;
//! the probe and the control server both use it.

pub mod dns;
pub mod failure;
pub mod flow;
pub mod hello;
pub mod http;
pub mod ipclass;
pub mod lenient;
pub mod metered;
pub mod quic;
pub mod raw;
pub mod records;
pub mod tcp;
pub mod tls;

pub use failure::Failure;
pub use records::{Clock, Trace};

/// Installs the aws-lc-rs crypto provider as the process default (once;
/// later calls are harmless).
pub fn install_crypto_provider() {
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
}
