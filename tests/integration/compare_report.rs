//! Tests: compare_report.
