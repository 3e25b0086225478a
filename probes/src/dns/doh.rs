//! DNS: doh (to be written).
