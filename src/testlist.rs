//! Test lists: Citizen Lab CSV and plain text (not written yet).
