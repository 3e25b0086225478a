//! The network-namespace censorship lab.
