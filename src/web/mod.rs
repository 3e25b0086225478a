//! Per-URL web measurement (not written yet).
