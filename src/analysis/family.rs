//! Interference that hits one address family only. When the site loaded
//! (over the other family), TCP connects that failed at the probe while the
//! control connected to the same endpoint, in one family only, are added to
//! the evidence: the status stays `accessible` (the site was reached), and
//! the reader learns that, e.g., IPv6 is blocked or broken on this path. An
//! unreachable IPv6 endpoint (no IPv6 route here) is not such a finding.

use crate::model::{Measurement, Verdict, VerdictStatus};

use super::outcome::is_unreachable;

/// Adds the one-family evidence sentence to an `accessible` verdict.
pub(crate) fn note(m: &Measurement, v: &mut Verdict) {
    if v.status != VerdictStatus::Accessible {
        return;
    }
    let Some(ctl) = m.test_keys.control.as_ref() else {
        return;
    };
    let mut failed: [Vec<String>; 2] = [Vec::new(), Vec::new()];
    let mut worked = [false, false];
    for c in &m.test_keys.tcp_connect {
        let Some(ep) = c.endpoint() else { continue };
        let fam = usize::from(ep.is_ipv6());
        if c.status.success {
            worked[fam] = true;
            continue;
        }
        let Some(f) = &c.status.failure else { continue };
        let control_ok = ctl
            .tcp_connect
            .get(&ep.to_string())
            .is_some_and(|t| t.status);
        if control_ok && !(ep.is_ipv6() && is_unreachable(f)) {
            failed[fam].push(format!("{ep} ({f})"));
        }
    }
    for (fam, other, name, other_name) in [(1, 0, "IPv6", "IPv4"), (0, 1, "IPv4", "IPv6")] {
        if !failed[fam].is_empty() && worked[other] && !worked[fam] {
            v.evidence.push(format!(
                "over {name} only, connects failed where the control connected: {}; the site loaded over {other_name} ({name}-only interference, or a broken {name} path from here)",
                failed[fam].join(", ")
            ));
        }
    }
}
