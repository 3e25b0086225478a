//! Tests: probes_tcp.
