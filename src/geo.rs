//! ASN and country lookups from MaxMind-format databases (not written yet).
