//! DNS: tcp (to be written).
