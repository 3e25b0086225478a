//! Tests: verdicts.
