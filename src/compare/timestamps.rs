//! Times as the results files write them.

/// Seconds since the epoch of a `YYYY-MM-DD hh:mm:ss` UTC time.
pub fn epoch(t: &str) -> Option<i64> {
    let fmt = time::macros::format_description!("[year]-[month]-[day] [hour]:[minute]:[second]");
    time::PrimitiveDateTime::parse(t, fmt)
        .ok()
        .map(|d| d.assume_utc().unix_timestamp())
}
