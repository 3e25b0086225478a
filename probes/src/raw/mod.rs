//! Raw sockets (to be written).
