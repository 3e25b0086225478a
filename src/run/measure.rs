//! One URL: the web measurement, the analysis, and the df-000 envelope
//! around them; then the probe's address is taken out (used for the
//! ASN/country lookup) and scrubbed from the record.

use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use tokio_util::sync::CancellationToken;

use super::config::RunSettings;
use super::scheduler::Slot;
use super::scrub;
use crate::analysis::{AnalysisContext, AsnLookup};
use crate::control::client::ControlClient;
use crate::geo::{GeoDb, ProbeLocation};
use crate::model::{self, Measurement, WebTestKeys};
use crate::testlist::Entry;
use crate::web::WebSettings;

/// `x_interrupted` when Ctrl-C cut the URL short.
pub const INTERRUPTED: &str = "interrupted";
/// `x_interrupted` when the per-URL deadline cut it short.
pub const DEADLINE: &str = "deadline";

/// Shared by every URL of a run.
#[derive(Debug)]
pub struct UrlContext {
    /// The run's settings.
    pub settings: Arc<RunSettings>,
    /// How each URL is measured.
    pub web: WebSettings,
    /// The control, unless `--control none`.
    pub control: Option<ControlClient>,
    /// ASN and country databases.
    pub geo: Arc<GeoDb>,
    /// What the analysis needs (its `probe_cc` is set per measurement).
    pub analysis: AnalysisContext,
    /// When the run started, UTC `YYYY-MM-DD hh:mm:ss`.
    pub test_start_time: String,
    /// What this line achieved for the URLs finished so far (throttling).
    pub line: super::line::LineBaseline,
    /// The clock and its offset to the reference time, with the run's
    /// start by the local clock (`None`: times as the system clock reads).
    pub clock: Option<(super::clock::ClockState, time::OffsetDateTime)>,
    where_: Mutex<WhereState>,
}

/// What the run has learnt about the probe's public address(es). The
/// addresses live only in memory, for scrubbing.
#[derive(Debug, Default)]
struct WhereState {
    addrs: Vec<IpAddr>,
    location: Option<ProbeLocation>,
}

/// A finished URL: the measurement (for the summary) and its scrubbed JSON
/// (what gets written).
#[derive(Debug)]
pub struct Finished {
    /// The measurement, before scrubbing; only used for counting.
    pub measurement: Measurement,
    /// The line to write.
    pub json: serde_json::Value,
}

impl UrlContext {
    /// A context for one run.
    pub fn new(
        settings: Arc<RunSettings>,
        web: WebSettings,
        control: Option<ControlClient>,
        geo: GeoDb,
        test_start_time: String,
    ) -> UrlContext {
        let geo = Arc::new(geo);
        let asn_db: Option<AsnLookup> = if geo.is_loaded() {
            let g = Arc::clone(&geo);
            Some(Arc::new(move |ip| g.asn(ip)))
        } else {
            None
        };
        let analysis = AnalysisContext {
            asn_db,
            treat_as_public: settings.treat_as_public.clone(),
            clusters: Some(Arc::new(crate::analysis::cluster::Registry::new())),
            ..AnalysisContext::default()
        };
        UrlContext {
            settings,
            web,
            control,
            geo,
            analysis,
            test_start_time,
            line: super::line::LineBaseline::default(),
            clock: None,
            where_: Mutex::new(WhereState::default()),
        }
    }

    /// Uses this clock: times are corrected by its offset and recorded
    /// (`x_clock_offset`, `x_clock`); `local_test_start` is when the run
    /// started by the local clock.
    pub fn with_clock(
        mut self,
        clock: super::clock::ClockState,
        local_test_start: time::OffsetDateTime,
    ) -> UrlContext {
        self.test_start_time = utc_string(clock.corrected(local_test_start));
        self.clock = Some((clock, local_test_start));
        self
    }

    /// What the local clock reads now.
    pub fn local_now(&self) -> time::OffsetDateTime {
        self.clock
            .as_ref()
            .map_or_else(time::OffsetDateTime::now_utc, |(c, _)| c.local.now())
    }

    /// Uses these blocking fingerprints (the shipped ones plus a user's
    /// directory) instead of the shipped set alone.
    pub fn with_fingerprints(mut self, fingerprints: crate::analysis::Fingerprints) -> UrlContext {
        self.analysis.fingerprints = fingerprints;
        self
    }

    /// Learns a public address: looks it up once and remembers it for
    /// scrubbing. A special-purpose address (a control on this host, behind
    /// a proxy or a tunnel sees 127.0.0.1 or a private address) is not the
    /// public one and is ignored ([`scrub::is_usable_public`]).
    pub fn learn_addr(&self, ip: IpAddr) {
        let ip = ip.to_canonical();
        if !scrub::is_usable_public(ip) {
            return;
        }
        let mut st = self.where_.lock().unwrap_or_else(|e| e.into_inner());
        if !st.addrs.contains(&ip) {
            st.addrs.push(ip);
            st.location = Some(self.geo.lookup(ip));
        }
    }

    /// Remembers an address of this machine for scrubbing only (no geo
    /// lookup: an interface address need not be the public one).
    pub fn learn_scrub_only(&self, ip: IpAddr) {
        let mut st = self.where_.lock().unwrap_or_else(|e| e.into_inner());
        if !st.addrs.contains(&ip) {
            st.addrs.push(ip);
        }
    }

    /// Where the probe is, as the measurements say it (the overrides
    /// applied); `AS0`/`ZZ` when unknown.
    pub fn probe_location(&self) -> ProbeLocation {
        self.location().0
    }

    fn location(&self) -> (ProbeLocation, Vec<IpAddr>) {
        let st = self.where_.lock().unwrap_or_else(|e| e.into_inner());
        let mut loc = st.location.clone().unwrap_or_default();
        if let Some(a) = &self.settings.probe_asn {
            loc.asn = a.clone();
            loc.network_name = None;
        }
        if let Some(c) = &self.settings.probe_cc {
            loc.cc = c.clone();
        }
        (loc, st.addrs.clone())
    }
}

/// Measures one URL; Ctrl-C (`cancel`) or the per-URL deadline give a
/// measurement marked `x_interrupted`. `slot` is given back once the
/// fetch is done (the DNS listening window, the analysis and any trace
/// then run without holding it).
pub async fn measure(
    ctx: Arc<UrlContext>,
    entry: Entry,
    cancel: CancellationToken,
    slot: Slot,
) -> Finished {
    let start = ctx.local_now();
    let t0 = Instant::now();
    // The web measurement keeps its own deadline (and returns what it has);
    // this one only guards against a measurement that overstays it.
    let deadline = ctx.web.url_deadline + DEADLINE_GRACE;
    // Injected-RST forensics (src/trace/forensics.rs): a run-wide raw
    // sniffer, started before the first URL's packets when privileged.
    let rst_watch = crate::trace::forensics::rst_watch();
    let (keys, interrupted) = tokio::select! {
        biased;
        _ = cancel.cancelled() => (WebTestKeys::default(), Some(INTERRUPTED)),
        r = tokio::time::timeout(deadline, web_keys(&ctx, &entry.url, slot)) => match r {
            Ok(k) => (k, None),
            Err(_) => (WebTestKeys::default(), Some(DEADLINE)),
        },
    };
    let mut m = envelope(&ctx, &entry, start, t0.elapsed().as_secs_f64());
    if let Some((clock, test_start)) = &ctx.clock {
        clock.stamp(&mut m, start, *test_start);
    }
    m.test_keys = keys;
    rst_watch.annotate(&mut m.test_keys, t0).await;
    if m.test_keys.agent.is_empty() {
        m.test_keys.agent = "redirect".to_string();
    }
    if let Some(why) = interrupted {
        m.test_keys.x_interrupted = Some(why.to_string());
    }
    let mut finished = finish(&ctx, m);
    // Last, after the verdict: localise the censor of a blocked URL.
    if ctx.settings.trace_blocked && interrupted.is_none() {
        let resolver = ctx.settings.resolvers.first().copied();
        let keys = &finished.measurement.test_keys;
        let traced = crate::trace::forensics::trace_blocked(&entry.url, keys, resolver);
        let x_trace = tokio::select! {
            biased;
            _ = cancel.cancelled() => None,
            x = traced => x,
        };
        if let Some(mut x) = x_trace {
            let (_, addrs) = ctx.location();
            scrub::scrub(&mut x, &addrs);
            finished.json["test_keys"]["x_trace"] = x.clone();
            finished.measurement.test_keys.x_trace = Some(x);
        }
    }
    finished
}

/// The web measurement of one URL, giving `slot` back once its fetch is
/// done.
async fn web_keys(ctx: &UrlContext, url: &str, slot: Slot) -> WebTestKeys {
    let (tx, rx) = tokio::sync::oneshot::channel();
    let web = crate::web::measure_telling_fetched(url, &ctx.web, ctx.control.as_ref(), tx);
    let release = async {
        if rx.await.is_ok() {
            slot.release();
        }
    };
    let (keys, ()) = tokio::join!(web, release);
    keys
}

/// How long past the web deadline a URL may run before it is cut off here.
const DEADLINE_GRACE: std::time::Duration = std::time::Duration::from_secs(15);

/// The df-000 base keys around the test keys.
fn envelope(
    ctx: &UrlContext,
    entry: &Entry,
    start: time::OffsetDateTime,
    runtime: f64,
) -> Measurement {
    let mut annotations = std::collections::BTreeMap::new();
    if !entry.category_code.is_empty() {
        annotations.insert("category_code".to_string(), entry.category_code.clone());
    }
    annotations.insert("engine_name".to_string(), model::SOFTWARE_NAME.to_string());
    annotations.insert(
        "engine_version".to_string(),
        model::SOFTWARE_VERSION.to_string(),
    );
    annotations.insert("platform".to_string(), std::env::consts::OS.to_string());
    annotations.insert(
        "architecture".to_string(),
        std::env::consts::ARCH.to_string(),
    );
    if ctx.settings.trace_blocked {
        annotations.insert("trace_blocked".to_string(), "true".to_string());
    }
    let mut test_helpers = std::collections::BTreeMap::new();
    if let Some(c) = &ctx.control {
        if let Some(first) = c.urls().first() {
            let kind = if first.starts_with("https:") {
                "https"
            } else {
                "http"
            };
            test_helpers.insert(
                "backend".to_string(),
                serde_json::json!({ "address": first, "type": kind }),
            );
        }
    }
    Measurement {
        annotations,
        data_format_version: model::DATA_FORMAT_VERSION.to_string(),
        input: Some(entry.url.clone()),
        measurement_start_time: utc_string(start),
        probe_asn: crate::geo::UNKNOWN_ASN.to_string(),
        probe_cc: crate::geo::UNKNOWN_CC.to_string(),
        probe_ip: model::SCRUBBED_PROBE_IP.to_string(),
        software_name: model::SOFTWARE_NAME.to_string(),
        software_version: model::SOFTWARE_VERSION.to_string(),
        test_helpers,
        test_name: model::TEST_NAME.to_string(),
        test_runtime: runtime,
        test_start_time: ctx.test_start_time.clone(),
        test_version: model::TEST_VERSION.to_string(),
        ..Default::default()
    }
}

/// Takes the probe's address out, fills in where the probe is, and scrubs.
fn finish(ctx: &UrlContext, mut m: Measurement) -> Finished {
    if let Some(addr) = m
        .test_keys
        .control
        .as_mut()
        .and_then(|c| c.x_client_addr.take())
        .as_deref()
        .and_then(scrub::parse_addr)
    {
        ctx.learn_addr(addr);
    }
    let (loc, addrs) = ctx.location();
    m.probe_asn = loc.asn;
    m.probe_cc = loc.cc;
    m.probe_network_name = loc.network_name;
    m.probe_ip = model::SCRUBBED_PROBE_IP.to_string();
    // A URL cut short by Ctrl-C has nothing to judge.
    if m.test_keys.x_interrupted.as_deref() != Some(INTERRUPTED) {
        let mut actx = ctx.analysis.clone();
        actx.probe_cc = m.probe_cc.clone();
        actx.line_rate_bps = ctx.line.median();
        actx.line_loss = ctx.line.loss();
        crate::analysis::analyze(&mut m, &actx);
        ctx.line.learn(&m);
    }
    let mut json = serde_json::to_value(&m).unwrap_or(serde_json::Value::Null);
    scrub::scrub_measurement(&mut json, &addrs);
    // The scrubbed form is what the summary sees too.
    let measurement = serde_json::from_value(json.clone()).unwrap_or(m);
    Finished { measurement, json }
}

/// UTC `YYYY-MM-DD hh:mm:ss`, OONI's time format.
pub fn utc_string(t: time::OffsetDateTime) -> String {
    let f = time::macros::format_description!("[year]-[month]-[day] [hour]:[minute]:[second]");
    t.to_offset(time::UtcOffset::UTC)
        .format(&f)
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::control::protocol::ControlResponse;

    #[test]
    fn time_format() {
        let t = time::macros::datetime!(2026-11-27 05:06:07 UTC);
        assert_eq!(utc_string(t), "2026-11-27 05:06:07");
    }

    #[test]
    fn client_addr_is_used_then_scrubbed() {
        let mut args = super::super::RunArgs::default();
        args.probe.probe_cc = Some("KH".into());
        let settings = super::super::config::resolve(&args, Default::default())
            .map(Arc::new)
            .unwrap();
        let ctx = UrlContext::new(
            settings,
            WebSettings::default(),
            None,
            GeoDb::default(),
            "2026-11-27 00:00:00".into(),
        );
        let entry = Entry {
            url: "https://a.example/".into(),
            category_code: "NEWS".into(),
        };
        let mut m = envelope(&ctx, &entry, time::OffsetDateTime::now_utc(), 1.0);
        m.test_keys.control = Some(ControlResponse {
            x_client_addr: Some("198.51.100.23".into()),
            ..Default::default()
        });
        m.test_keys.control_failure = Some("seen from 198.51.100.23".into());
        let f = finish(&ctx, m);
        let text = f.json.to_string();
        assert!(!text.contains("198.51.100.23"), "{text}");
        assert!(!text.contains("x_client_addr"), "{text}");
        assert_eq!(
            f.json["test_keys"]["control_failure"],
            "seen from [scrubbed]"
        );
        assert_eq!(f.json["probe_ip"], "127.0.0.1");
        assert_eq!(f.json["probe_cc"], "KH");
        assert_eq!(f.json["probe_asn"], "AS0");
        assert_eq!(f.json["annotations"]["category_code"], "NEWS");
    }
}
