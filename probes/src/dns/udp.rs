//! DNS: udp (to be written).
