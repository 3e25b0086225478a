//! Tests: fakes.
