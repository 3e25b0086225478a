//! Tests: trace.
