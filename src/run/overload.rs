//! What a finished URL says about the load of the run (for the adaptive
//! number of URLs in flight, [`super::scheduler::Aimd`]).
//!
//! Signs of overload: the control refused (HTTP 429 or 503) or did not
//! answer in time, or our own resource limits (`x_probe_resource_limit`)
//! kept a step from running. A URL's own timeouts are not: a blocked URL
//! that drops SYNs times out whatever the load, and slowing the run down on
//! those would only make it take longer to classify (the bound of a run is
//! max(T, n_timeouts × T / P)).

use probes::Failure;

use super::measure::Finished;
use super::scheduler::Load;

/// The load a finished URL reports.
pub fn load_of(f: &Finished) -> Load {
    let k = &f.measurement.test_keys;
    let control_overloaded = k.control_failure.as_deref().is_some_and(|c| {
        c.contains("answered HTTP 429")
            || c.contains("answered HTTP 503")
            || c.contains("no control answered within")
    });
    let limit = Failure::ProbeResourceLimit.to_string();
    let own_limit = k.x_skipped.iter().any(|s| s.contains(&limit));
    if control_overloaded || own_limit {
        Load::Overloaded
    } else {
        Load::Fine
    }
}
