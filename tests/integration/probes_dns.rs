//! Tests: probes_dns.
