//! tcp (to be written).
