//! Tests: unattended.
