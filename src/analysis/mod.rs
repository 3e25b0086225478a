//! Analysis: classic OONI keys and our verdict (not written yet).
