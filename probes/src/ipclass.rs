//! ipclass (to be written).
