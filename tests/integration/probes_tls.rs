//! Tests: probes_tls.
