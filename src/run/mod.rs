//! `gatewatch run`: test lists in, one OONI-format measurement per URL out.
//!
//! The flow: merge flags over the config file ([`config`]), check consent
//! ([`consent`]), open the inputs ([`inputs`], refusing what is not a list
//! before anything is measured), then let the [`scheduler`] run [`measure`]
//! over the stream of URLs while this task writes each finished measurement
//! to the results file ([`output`]), updates the [`progress`] display and
//! tallies the [`summary`]. The probe's public address is scrubbed
//! ([`scrub`]) before a measurement leaves [`measure`].
//!
//! Exit codes: 0 the run completed; 2 usage, config or input error (nothing
//! measured); 69 no network (the [`preflight`] found no resolver, control or
//! STUN server answering), or no control and the config says
//! `on_no_control = "stop"`; nothing measured; 75 another run holds the lock; 130 interrupted (Ctrl-C or SIGTERM; finished URLs are kept,
//! `--resume` continues); 1 any other abort (e.g. the results file cannot be
//! written).

pub mod clock;
pub mod config;
pub mod consent;
pub mod inputs;
pub mod line;
pub mod measure;
pub mod netcheck;
pub mod netwatch;
pub mod output;
pub mod overload;
pub mod plainwords;
pub mod preflight;
pub mod progress;
pub mod publicip;
pub mod scheduler;
pub mod scrub;
pub mod strings;
pub mod summary;
pub mod unattended;

use std::collections::HashSet;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use ipnet::IpNet;
use tokio_util::sync::CancellationToken;

use self::config::{ConfigError, FileConfig, RunSettings, PER_HOST_LIMIT};
use self::consent::Consent;
use self::inputs::{InputError, InputPlan};
use self::measure::{Finished, UrlContext};
use self::output::{OutputError, ResultsWriter};
use self::progress::Progress;
use self::scheduler::Ended;
use self::strings::Lang;
use self::summary::Summary;
use crate::control::client::ControlClient;
use crate::geo::{GeoDb, GeoError};
use crate::web::{HostLimiter, QuicMode, WebSettings};
use probes::dns::doh::DohServer;
use probes::tls::TrustRoots;

/// The run completed.
pub const EXIT_OK: u8 = 0;
/// The run aborted for another reason.
pub const EXIT_ABORT: u8 = 1;
/// Usage, config or input error; nothing was measured.
pub const EXIT_USAGE: u8 = 2;
/// No network, or no control when the config says to stop without one
/// (EX_UNAVAILABLE): nothing was measured.
pub const EXIT_NO_NETWORK: u8 = 69;
/// Another run holds the lock (EX_TEMPFAIL): nothing was measured.
pub const EXIT_BUSY: u8 = 75;
/// Interrupted by Ctrl-C or SIGTERM.
pub const EXIT_INTERRUPTED: u8 = 130;
/// The whole network was intercepted (captive portal, walled garden, dead
/// connection): the run stopped; what was measured is kept, `--resume`
/// measures the affected URLs again.
pub const EXIT_NETWORK_INTERCEPTED: u8 = 3;

/// Examples, exit codes and files, as `gatewatch run --help` shows them.
pub const EXIT_CODES_HELP: &str = "Examples:
  gatewatch run                                   # the shipped Cambodian list
  gatewatch run --lang km https://example.org/    # one URL, Khmer messages
  gatewatch run -i list.csv --category NEWS,HUMR -o results.jsonl
  gatewatch run --config ~/gw.toml --resume       # continue an interrupted run
Exit codes: 0 the run completed; 2 usage, config or input error \
(nothing measured); 3 network-wide interception (captive portal, walled garden, dead \
connection): stopped, measured URLs kept, --resume measures the affected ones again; \
69 no network: no resolver, control or STUN server answered the preflight (or no control and \
on_no_control = \"stop\"; nothing measured); 75 another run holds the lock (nothing measured); \
130 interrupted by Ctrl-C or SIGTERM (finished URLs are kept; --resume continues); 1 any other \
abort.\n\
Files: config $XDG_CONFIG_HOME/gatewatch/config.toml, results \
$XDG_DATA_HOME/gatewatch/results/, lists from `gatewatch lists update` \
$XDG_DATA_HOME/gatewatch/lists/.";

/// Errors of `gatewatch run`.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    /// Bad flags or config file.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// Bad inputs.
    #[error(transparent)]
    Input(#[from] InputError),
    /// `--category` names a code we do not know.
    #[error(transparent)]
    Category(#[from] crate::categories::UnknownCategory),
    /// A fingerprint directory cannot be used.
    #[error(transparent)]
    Fingerprints(#[from] crate::analysis::FingerprintError),
    /// A geo database could not be opened.
    #[error(transparent)]
    Geo(#[from] GeoError),
    /// A `--ca-file` cannot be used.
    #[error("{reason}")]
    CaFile {
        /// Why (names the file).
        reason: String,
    },
    /// The control client cannot be set up.
    #[error("{0}")]
    Control(String),
    /// Consent is needed and was not given.
    #[error("{0}")]
    Consent(String),
    /// No place for the results file.
    #[error("no data directory: give --output FILE")]
    NoDataDir,
    /// The results file failed.
    #[error(transparent)]
    Output(#[from] OutputError),
    /// Another run is in progress.
    #[error(transparent)]
    Busy(crate::schedule::ScheduleError),
    /// The JSON summary could not be written.
    #[error("cannot write the JSON summary {path}: {source}")]
    Summary {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
}

impl RunError {
    /// The exit code this error maps to.
    pub fn exit_code(&self) -> u8 {
        match self {
            RunError::Config(_)
            | RunError::Input(_)
            | RunError::Category(_)
            | RunError::Geo(_)
            | RunError::Fingerprints(_)
            | RunError::CaFile { .. }
            | RunError::Consent(_)
            | RunError::Control(_)
            | RunError::NoDataDir => EXIT_USAGE,
            RunError::Output(_) | RunError::Summary { .. } => EXIT_ABORT,
            RunError::Busy(_) => EXIT_BUSY,
        }
    }
}

/// Arguments of `gatewatch run` (each also settable in the config file,
/// same name with `_` for `-`; a flag wins).
#[derive(Clone, Debug, Default, clap::Args)]
#[command(after_help = EXIT_CODES_HELP)]
pub struct RunArgs {
    /// URLs to measure (instead of, or on top of, the lists).
    #[arg(value_name = "URL")]
    #[arg(help_heading = "Input")]
    pub urls: Vec<String>,
    /// A test list: Citizen Lab CSV or one URL a line (repeatable).
    #[arg(long = "input-file", short = 'i', value_name = "FILE")]
    #[arg(help_heading = "Input")]
    pub input_file: Vec<PathBuf>,
    /// A named list: the copy from `gatewatch lists update` when there is
    /// one, else the list we ship (`kh`). Default when nothing else is
    /// given: our curated `kh` list.
    #[arg(long, value_name = "NAME")]
    #[arg(help_heading = "Input")]
    pub list: Option<String>,
    /// Keep only these category codes (e.g. `NEWS,HUMR`); URLs without a
    /// category (command line, plain-text lists) are always kept.
    #[arg(long, value_delimiter = ',', value_name = "CODES")]
    #[arg(help_heading = "Input")]
    pub category: Vec<String>,
    /// URLs measured at a time [default: 16].
    #[arg(long, value_name = "N")]
    #[arg(help_heading = "Measurement")]
    pub parallel: Option<usize>,
    /// Results file (JSONL) [default: a dated file under the data directory].
    #[arg(long, short = 'o', value_name = "FILE")]
    #[arg(help_heading = "Output")]
    pub output: Option<PathBuf>,
    /// Continue an interrupted run into the same file (the newest results
    /// file when --output is not given), skipping finished URLs.
    #[arg(long)]
    #[arg(help_heading = "Output")]
    pub resume: bool,
    /// Also write the summary as JSON.
    #[arg(long, value_name = "FILE")]
    #[arg(help_heading = "Output")]
    pub json_summary: Option<PathBuf>,
    /// Config file (TOML) [default: $XDG_CONFIG_HOME/gatewatch/config.toml].
    #[arg(long, value_name = "FILE")]
    #[arg(help_heading = "Input")]
    pub config: Option<PathBuf>,
    /// Where the probe is, how it measures (boxed: these are many).
    #[command(flatten)]
    pub probe: Box<ProbeArgs>,
    /// I have read the risks and consent (for unattended runs).
    #[arg(long, short = 'y')]
    #[arg(help_heading = "Unattended")]
    pub yes: bool,
    /// No progress bar or progress lines.
    #[arg(long)]
    #[arg(help_heading = "Output")]
    pub no_progress: bool,
    /// Language of the consent text and summary [default: from the locale].
    #[arg(long, value_enum)]
    #[arg(help_heading = "Output")]
    pub lang: Option<Lang>,
    /// Upload every measurement to this OONI-compatible collector; what
    /// fails is spooled for `gatewatch upload`.
    #[arg(long, value_name = "URL")]
    #[arg(help_heading = "Unattended")]
    pub upload: Option<String>,
    /// Do not record verdicts in the local history database.
    #[arg(long)]
    #[arg(help_heading = "Privacy")]
    pub no_history: bool,
    /// Wait a random time up to this long before starting (for cron).
    #[arg(long, value_name = "DURATION")]
    #[arg(help_heading = "Unattended")]
    pub random_delay: Option<humantime::Duration>,
}

/// The measurement settings of `gatewatch run`.
#[derive(Clone, Debug, Default, clap::Args)]
pub struct ProbeArgs {
    /// `probe_asn` to write (e.g. AS38623) instead of the database lookup.
    #[arg(long, value_name = "ASN")]
    #[arg(help_heading = "Privacy")]
    pub probe_asn: Option<String>,
    /// `probe_cc` to write (e.g. KH) instead of the database lookup.
    #[arg(long, value_name = "CC")]
    #[arg(help_heading = "Privacy")]
    pub probe_cc: Option<String>,
    /// MaxMind-format ASN database (.mmdb).
    #[arg(long, value_name = "FILE")]
    #[arg(help_heading = "Privacy")]
    pub asn_db: Option<PathBuf>,
    /// MaxMind-format country database (.mmdb).
    #[arg(long, value_name = "FILE")]
    #[arg(help_heading = "Privacy")]
    pub country_db: Option<PathBuf>,
    /// Extra trust anchors, PEM (repeatable).
    #[arg(long, value_name = "FILE")]
    #[arg(help_heading = "Measurement")]
    pub ca_file: Vec<PathBuf>,
    /// Treat this special-purpose range as public (repeatable; for test labs).
    #[arg(long, value_name = "CIDR")]
    #[arg(help_heading = "Measurement")]
    pub treat_as_public: Vec<IpNet>,
    /// A UDP resolver (IP[:PORT]) to query besides the system one (repeatable).
    #[arg(long, value_name = "ADDR")]
    #[arg(help_heading = "Measurement")]
    pub resolver: Vec<String>,
    /// Do not ask the system resolver (getaddrinfo); only --resolver/--doh.
    #[arg(long)]
    #[arg(help_heading = "Measurement")]
    pub no_system_resolver: bool,
    /// A DNS-over-HTTPS resolver to query (repeatable).
    #[arg(long, value_name = "URL")]
    #[arg(help_heading = "Measurement")]
    pub doh: Vec<String>,
    /// Control server URL, repeatable for failover; `none` for no control.
    #[arg(long, value_name = "URL|none")]
    #[arg(help_heading = "Control")]
    pub control: Vec<String>,
    /// DNS step timeout [default: 4s].
    #[arg(long, value_name = "DURATION")]
    #[arg(help_heading = "Measurement")]
    pub dns_timeout: Option<humantime::Duration>,
    /// TCP connect timeout [default: 10s].
    #[arg(long, value_name = "DURATION")]
    #[arg(help_heading = "Measurement")]
    pub tcp_timeout: Option<humantime::Duration>,
    /// TLS handshake timeout [default: 10s].
    #[arg(long, value_name = "DURATION")]
    #[arg(help_heading = "Measurement")]
    pub tls_timeout: Option<humantime::Duration>,
    /// HTTP round-trip timeout [default: 10s].
    #[arg(long, value_name = "DURATION")]
    #[arg(help_heading = "Measurement")]
    pub http_timeout: Option<humantime::Duration>,
    /// Give up on one URL after this long [default: 60s].
    #[arg(long, value_name = "DURATION")]
    #[arg(help_heading = "Measurement")]
    pub url_deadline: Option<humantime::Duration>,
    /// Localise the censoring hop of URLs found blocked.
    #[arg(long)]
    #[arg(help_heading = "Measurement")]
    pub trace_blocked: bool,
    /// Make a QUIC (HTTP/3) handshake to every address of every https URL,
    /// not only when the control reports an HTTP/3 endpoint for the site.
    #[arg(long)]
    #[arg(help_heading = "Measurement")]
    pub quic: bool,
    /// A directory with OONI-format `fingerprints_dns.csv` and/or
    /// `fingerprints_http.csv`, used besides the shipped fingerprints.
    #[arg(long, value_name = "DIR")]
    #[arg(help_heading = "Measurement")]
    pub fingerprints: Option<PathBuf>,
    /// STUN server asked for the probe's public address, so it can be
    /// scrubbed when the control does not report it [default:
    /// stun.l.google.com:19302]; `none` to skip.
    #[arg(long, value_name = "ADDR|none")]
    #[arg(help_heading = "Privacy")]
    pub stun: Option<String>,
    /// A harmless reference target for the network checks (repeatable;
    /// `none` for no checks) [default: the control's host over http and
    /// https, and http(s)://example.com/].
    #[arg(long, value_name = "URL|none")]
    #[arg(help_heading = "Measurement")]
    pub reference: Vec<String>,
    /// How often the network checks run during a run (also after a burst
    /// of failures) [default: 5m].
    #[arg(long, value_name = "DURATION")]
    #[arg(help_heading = "Measurement")]
    pub recheck_interval: Option<humantime::Duration>,
}

/// Runs the command; returns the process exit code. Usage, config and input
/// errors are reported here (exit code 2); other errors go up (exit 1).
pub async fn execute(args: RunArgs) -> Result<u8, RunError> {
    let lang = args.lang.unwrap_or_else(Lang::from_env);
    match run(args).await {
        Ok(code) => Ok(code),
        Err(e) if matches!(e.exit_code(), EXIT_USAGE | EXIT_BUSY) => {
            if let Some(lead) = plainwords::refused(lang, e.exit_code() == EXIT_BUSY) {
                eprintln!("gatewatch run: {lead}");
            }
            eprintln!("gatewatch run: {e}");
            Ok(e.exit_code())
        }
        Err(e) => Err(e),
    }
}

async fn run(args: RunArgs) -> Result<u8, RunError> {
    let settings = Arc::new(load_settings(&args)?);
    let lang = settings.lang;

    // Inputs first: a bad list is reported before consent is asked.
    crate::categories::check(&settings.categories)?;
    let plan = InputPlan::new(
        &settings.urls,
        &settings.input_files,
        settings.list.as_deref(),
        &settings.categories,
    )?;
    let geo = GeoDb::open(settings.asn_db.as_deref(), settings.country_db.as_deref())?;
    let fingerprints = match &settings.fingerprints {
        Some(dir) => Some(crate::analysis::Fingerprints::load_dir(dir)?),
        None => None,
    };
    let web = web_settings(&settings)?;
    let control = control_client(&settings)?;

    match consent::check(settings.consent, lang) {
        Consent::Given => {}
        Consent::Declined => {
            eprintln!("{}", strings::consent_declined(lang));
            return Ok(EXIT_USAGE);
        }
        Consent::Missing => {
            return Err(RunError::Consent(
                strings::consent_needed_unattended(lang).to_string(),
            ))
        }
    }

    let Some(mut unattended) = unattended::Unattended::start(&settings).await? else {
        return Ok(EXIT_INTERRUPTED);
    };

    // Ctrl-C and SIGTERM from here on end the run with EXIT_INTERRUPTED,
    // in the preflight and the clock check too.
    let cancel = CancellationToken::new();
    spawn_signal_watch(cancel.clone(), lang);

    // Is there a network, and a control? (A few seconds, all at once.)
    let preflight = preflight::check(preflight::Targets {
        hosts: preflight::hosts_of(
            plan.open(HashSet::new())?.take(64).map(|e| e.url),
            preflight::HOSTS_CHECKED,
        ),
        system_resolver: settings.system_resolver,
        resolvers: web.resolvers.clone(),
        control: control.as_ref(),
        stun: settings.stun.clone(),
    });
    let pre = tokio::select! {
        p = preflight => p,
        _ = cancel.cancelled() => return Ok(EXIT_INTERRUPTED),
    };
    if preflight::announce(&pre, lang, settings.stop_without_control) == preflight::Go::Stop {
        return Ok(EXIT_NO_NETWORK);
    }

    // The probe's clock against the control's (see clock.rs).
    let local_clock = clock::LocalClock::from_env();
    let run_start = local_clock.now();
    let clock_state = tokio::select! {
        c = clock::check_control(local_clock, control.as_ref()) => c,
        _ = cancel.cancelled() => return Ok(EXIT_INTERRUPTED),
    };
    if let Some(w) = clock_state.summary().warning(lang) {
        eprintln!("gatewatch: {w}");
    }
    let mut web = web;
    web.clock_offset_secs = local_clock.cert_offset(clock_state.offset);
    let output_path = output_path(&settings, run_start)?;
    let done = if settings.resume {
        let st = output::prepare_resume(&output_path)?;
        if st.dropped > 0 {
            eprintln!(
                "gatewatch: {}: dropped {} incomplete or interrupted line(s); those URLs are measured again",
                output_path.display(),
                st.dropped
            );
        }
        st.done.iter().map(|u| inputs::url_key(u)).collect()
    } else {
        HashSet::new()
    };

    // Count first (streaming, nothing kept), reporting malformed rows once.
    let mut counting = plan.open(done.clone())?;
    let total = counting.by_ref().count() as u64;
    for w in counting.take_warnings() {
        eprintln!("gatewatch: warning: {w}");
    }
    let resumed_skipped = counting.skipped_done();
    drop(counting);
    let stream = plan.open(done)?;

    let mut writer = ResultsWriter::open(&output_path, settings.resume)?;
    let mut ctx = UrlContext::new(
        settings.clone(),
        web,
        control,
        geo,
        measure::utc_string(run_start),
    );
    if let Some(f) = fingerprints {
        ctx = ctx.with_fingerprints(f);
    }
    ctx = ctx.with_clock(clock_state.clone(), run_start);
    // The probe's own addresses, for scrubbing even when the control does
    // not report the public one; the public one from the preflight (our
    // control's health answer, STUN) before any page is fetched.
    for ip in publicip::global_interface_addrs() {
        ctx.learn_scrub_only(ip);
    }
    for ip in &pre.public_addrs {
        ctx.learn_addr(*ip);
    }
    if is_unknown(&ctx.probe_location()) {
        eprintln!(
            "gatewatch: warning: {}",
            strings::net_words(lang, strings::NetWords::UnknownNetwork)
        );
    }
    let ctx = Arc::new(ctx);
    // Reference checks before and during the run (netcheck.rs, netwatch.rs).
    let references = if settings.control_disabled() && settings.references.is_empty() {
        Vec::new()
    } else {
        // A control the preflight could not reach says nothing of the
        // network: its host is no reference then (it would fail for the
        // control's own reason).
        let urls = match pre.network() {
            preflight::Network::NoControl => Vec::new(),
            _ => ctx
                .control
                .as_ref()
                .map(|c| c.urls().to_vec())
                .unwrap_or_default(),
        };
        netcheck::reference_urls(&settings.references, &urls)
    };
    let before = match netwatch::before_run(ctx.clone(), &references, lang).await {
        Ok(b) => b,
        Err(episode) => {
            let summary = Summary {
                test_start_time: ctx.test_start_time.clone(),
                clock: Some(clock_state.summary()),
                output: output_path.clone(),
                total,
                resumed_skipped,
                aborted: true,
                network_interception: vec![episode],
                ..Default::default()
            };
            return finish_summary(&summary, &settings, lang).map(|()| EXIT_NETWORK_INTERCEPTED);
        }
    };
    let mut watch = netwatch::NetWatch::start(
        ctx.clone(),
        references,
        settings.recheck_interval,
        before.as_ref(),
        netwatch::Reaction {
            cancel: cancel.clone(),
            interactive: netwatch::interactive(),
            lang,
        },
    );

    let mut progress = Progress::new(total, settings.no_progress, lang);
    let mut dates = clock::DateWatch::default();
    let mut summary = Summary {
        test_start_time: ctx.test_start_time.clone(),
        clock: Some(clock_state.summary()),
        output: output_path.clone(),
        total,
        resumed_skipped,
        ..Default::default()
    };
    let started = Instant::now();
    let ended = scheduler::run_adaptive(
        stream,
        scheduler::Aimd::new(settings.parallel),
        PER_HOST_LIMIT,
        cancel.clone(),
        |entry, token, slot| measure::measure(ctx.clone(), entry, token, slot),
        overload::load_of,
        |f: Finished| -> Result<(), OutputError> {
            for f in watch.finished(f) {
                writer.write(&f.json)?;
                unattended.finished(&f.measurement, &f.json);
                dates.observe(&f.measurement);
                let anomalous = summary.add(&f.measurement);
                progress.finished_one(anomalous);
            }
            Ok(())
        },
    )
    .await;
    // What the network watch still holds back is written now.
    // A check still running is waited for, unless Ctrl-C stopped the run.
    let wait = if cancel.is_cancelled() && !watch.stopped() {
        std::time::Duration::ZERO
    } else {
        settings.url_deadline + std::time::Duration::from_secs(5)
    };
    for f in watch.finish(wait).await {
        writer.write(&f.json)?;
        unattended.finished(&f.measurement, &f.json);
        dates.observe(&f.measurement);
        let anomalous = summary.add(&f.measurement);
        progress.finished_one(anomalous);
    }
    summary.network_interception = watch.episodes();
    summary.network_checks = watch.checks();
    if let Some(c) = summary.clock.as_mut() {
        c.date_headers_offset_seconds = dates.offset();
    }
    progress.finish();
    if let Some(up) = unattended.finish().await {
        eprintln!(
            "gatewatch: uploaded {}, spooled {} (retry with `gatewatch upload`), older spooled uploaded {}",
            up.uploaded, up.spooled, up.drained
        );
    }
    let ended = match ended {
        Ok(e) => e,
        Err(e) => {
            cancel.cancel();
            return Err(e.into());
        }
    };
    let _ = writer.sync();
    summary.runtime_seconds = started.elapsed().as_secs_f64();
    let loc = ctx.probe_location();
    summary.probe_asn = loc.asn;
    summary.probe_cc = loc.cc;
    summary.probe_network_name = loc.network_name;
    summary.network = Some(summary::NetworkHealth {
        state: pre.network(),
        controls: ctx.control.as_ref().map(|c| c.health()).unwrap_or_default(),
        preflight: pre,
    });
    summary.aborted = ended == Ended::Cancelled;
    if let Some(reg) = &ctx.analysis.clusters {
        summary.page_clusters = reg.clusters();
    }
    finish_summary(&summary, &settings, lang)?;
    Ok(match ended {
        _ if watch.stopped() => EXIT_NETWORK_INTERCEPTED,
        Ended::Completed => EXIT_OK,
        Ended::Cancelled => EXIT_INTERRUPTED,
    })
}

fn load_settings(args: &RunArgs) -> Result<RunSettings, RunError> {
    let file = match &args.config {
        Some(p) => FileConfig::load(p)?,
        None => match config::config_dir().map(|d| d.join("config.toml")) {
            Some(p) if p.is_file() => FileConfig::load(&p)?,
            _ => FileConfig::default(),
        },
    };
    Ok(config::resolve(args, file)?)
}

/// `--output`, or (with `--resume`) the newest results file, or a new
/// dated file under `$XDG_DATA_HOME/gatewatch/results/`.
fn output_path(s: &RunSettings, start: time::OffsetDateTime) -> Result<PathBuf, RunError> {
    if let Some(p) = &s.output {
        return Ok(p.clone());
    }
    let dir = config::data_dir()
        .ok_or(RunError::NoDataDir)?
        .join("results");
    if s.resume {
        if let Some(p) = output::newest_results(&dir) {
            return Ok(p);
        }
    }
    let f = time::macros::format_description!("[year]-[month]-[day]T[hour][minute][second]Z");
    let stamp = start.format(&f).unwrap_or_else(|_| "run".to_string());
    Ok(dir.join(format!("{stamp}-web_connectivity.jsonl")))
}

/// Prints the summary and writes `--json-summary`.
fn finish_summary(summary: &Summary, settings: &RunSettings, lang: Lang) -> Result<(), RunError> {
    print!("{}", summary.render(lang));
    if let Some(p) = &settings.json_summary {
        summary.write_json(p).map_err(|source| RunError::Summary {
            path: p.clone(),
            source,
        })?;
    }
    Ok(())
}

/// The per-URL measurement settings from the run's settings.
fn web_settings(s: &RunSettings) -> Result<WebSettings, RunError> {
    let roots = if s.ca_files.is_empty() {
        TrustRoots::webpki()
    } else {
        TrustRoots::with_pem_files(&s.ca_files).map_err(|e| RunError::CaFile {
            reason: e.to_string(),
        })?
    };
    let defaults = WebSettings::default();
    Ok(WebSettings {
        resolvers: if s.resolvers.is_empty() {
            defaults.resolvers.clone()
        } else {
            s.resolvers.clone()
        },
        doh: s
            .doh
            .iter()
            .map(|u| DohServer {
                url: u.clone(),
                addr: None,
            })
            .collect(),
        system_resolver: s.system_resolver,
        dns: s.dns_timeout,
        tcp: s.tcp_timeout,
        tls: s.tls_timeout,
        http: s.http_timeout,
        url_deadline: s.url_deadline,
        roots,
        treat_as_public: s.treat_as_public.clone(),
        host_limiter: Some(HostLimiter::new(PER_HOST_LIMIT)),
        quic: if s.quic {
            QuicMode::Always
        } else {
            QuicMode::Discovered
        },
        ..defaults
    })
}

/// The control client: the `--control` URLs in failover order, OONI's
/// public test helpers when none is given, `None` with `--control none`.
fn control_client(s: &RunSettings) -> Result<Option<ControlClient>, RunError> {
    if s.control_disabled() {
        return Ok(None);
    }
    let client = if s.control.is_empty() {
        ControlClient::with_defaults()
    } else {
        ControlClient::new(s.control.clone(), &s.ca_files)
    };
    // A control that pushes back is waited for up to the URL's own
    // deadline (the web measurement cuts it there), not the client's 30 s.
    client
        .map(|c| {
            Some(c.with_timing(
                crate::control::client::DEFAULT_HEDGE_DELAY,
                s.url_deadline.max(crate::control::client::DEFAULT_DEADLINE),
            ))
        })
        .map_err(|e| RunError::Control(e.to_string()))
}

/// True when the network or the country is unknown (`AS0` or `ZZ`).
fn is_unknown(loc: &crate::geo::ProbeLocation) -> bool {
    loc.asn == crate::geo::UNKNOWN_ASN || loc.cc == crate::geo::UNKNOWN_CC
}

/// Ctrl-C and SIGTERM cancel the run.
fn spawn_signal_watch(cancel: CancellationToken, lang: Lang) {
    tokio::spawn(async move {
        #[cfg(unix)]
        {
            use tokio::signal::unix::{signal, SignalKind};
            let term = signal(SignalKind::terminate());
            match term {
                Ok(mut term) => {
                    tokio::select! {
                        _ = tokio::signal::ctrl_c() => {}
                        _ = term.recv() => {}
                    }
                }
                Err(_) => {
                    let _ = tokio::signal::ctrl_c().await;
                }
            }
        }
        #[cfg(not(unix))]
        {
            let _ = tokio::signal::ctrl_c().await;
        }
        eprintln!("{}", self::plainwords::interrupted(lang));
        cancel.cancel();
        exit_after_grace();
    });
}

/// How long an interrupted run may take to write what it has before the
/// process ends anyway (a blocking call such as a stuck getaddrinfo cannot
/// be cancelled).
pub const INTERRUPT_GRACE: std::time::Duration = std::time::Duration::from_secs(10);

/// After an interruption: a second Ctrl-C/SIGTERM, or [`INTERRUPT_GRACE`],
/// ends the process with [`EXIT_INTERRUPTED`] whatever is still running.
/// Finished URLs are already written and flushed; the run lock (flock) is
/// released by the kernel.
fn exit_after_grace() {
    let _ = std::thread::Builder::new()
        .name("exit-watchdog".into())
        .spawn(|| {
            std::thread::sleep(INTERRUPT_GRACE);
            eprintln!("gatewatch: still busy {INTERRUPT_GRACE:?} after the interruption; exiting");
            std::process::exit(i32::from(EXIT_INTERRUPTED));
        });
    tokio::spawn(async {
        #[cfg(unix)]
        {
            use tokio::signal::unix::{signal, SignalKind};
            if let Ok(mut term) = signal(SignalKind::terminate()) {
                tokio::select! {
                    _ = tokio::signal::ctrl_c() => {}
                    _ = term.recv() => {}
                }
            } else {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
        #[cfg(not(unix))]
        {
            let _ = tokio::signal::ctrl_c().await;
        }
        eprintln!("gatewatch: interrupted again; exiting now");
        std::process::exit(i32::from(EXIT_INTERRUPTED));
    });
}
