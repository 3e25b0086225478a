//! Tests: web.
