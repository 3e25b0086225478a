//! DNS: system (to be written).
