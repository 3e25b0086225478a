//! Tests: probes_http.
