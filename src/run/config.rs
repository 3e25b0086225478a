//! Settings of `gatewatch run`: the TOML config file (`--config FILE`, or
//! `$XDG_CONFIG_HOME/gatewatch/config.toml` when it exists) with the same
//! settings as the flags; a flag given on the command line wins.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use ipnet::IpNet;
use serde::Deserialize;

use super::strings::Lang;
use super::RunArgs;

/// `--parallel` when neither flag nor config says otherwise. Each URL waits
/// mostly on the network (DNS, connect and HTTP timeouts of seconds), so
/// throughput grows almost linearly with parallelism until the uplink or a
/// middlebox saturates; 16 keeps a 2000-URL list to a few minutes while
/// staying well below what home routers and mobile NATs tolerate (each URL
/// opens a handful of connections, so about 50–100 sockets at once).
pub const DEFAULT_PARALLEL: usize = 16;
/// Upper bound for `--parallel`.
pub const MAX_PARALLEL: usize = 256;
/// At most this many URLs of one host are measured at once.
pub const PER_HOST_LIMIT: usize = 2;

/// A config problem (exit code 2).
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read config file {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The file is not valid TOML for us.
    #[error("invalid config file {path}: {reason}")]
    Parse {
        /// The file.
        path: PathBuf,
        /// What was wrong.
        reason: String,
    },
    /// A value is out of range or malformed.
    #[error("invalid setting {key}: {reason}")]
    Value {
        /// The setting.
        key: &'static str,
        /// What was wrong.
        reason: String,
    },
}

/// The config file: every key optional, named like the long flags with
/// `_` for `-` (`dns_timeout = "4s"`, `control = ["https://..."]`), plus
/// `consent = true` for unattended runs.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileConfig {
    /// Input files.
    #[serde(default)]
    pub input_file: Vec<PathBuf>,
    /// `kh`, `global`, ...
    pub list: Option<String>,
    /// Category codes to keep.
    #[serde(default)]
    pub category: Vec<String>,
    /// URLs at a time.
    pub parallel: Option<usize>,
    /// Results file.
    pub output: Option<PathBuf>,
    /// Summary file.
    pub json_summary: Option<PathBuf>,
    /// `AS<n>` override.
    pub probe_asn: Option<String>,
    /// Country override.
    pub probe_cc: Option<String>,
    /// ASN database.
    pub asn_db: Option<PathBuf>,
    /// Country database.
    pub country_db: Option<PathBuf>,
    /// Extra trust anchors.
    #[serde(default)]
    pub ca_file: Vec<PathBuf>,
    /// Special-purpose ranges to treat as public.
    #[serde(default)]
    pub treat_as_public: Vec<String>,
    /// UDP resolvers.
    #[serde(default)]
    pub resolver: Vec<String>,
    /// DoH resolvers.
    #[serde(default)]
    pub doh: Vec<String>,
    /// Ask the system resolver too (default true).
    pub system_resolver: Option<bool>,
    /// Control URLs, or `none`.
    #[serde(default)]
    pub control: Vec<String>,
    /// DNS step timeout.
    pub dns_timeout: Option<String>,
    /// TCP connect timeout.
    pub tcp_timeout: Option<String>,
    /// TLS handshake timeout.
    pub tls_timeout: Option<String>,
    /// HTTP round-trip timeout.
    pub http_timeout: Option<String>,
    /// Whole-URL deadline.
    pub url_deadline: Option<String>,
    /// Localise the censoring hop of blocked URLs.
    pub trace_blocked: Option<bool>,
    /// QUIC handshakes for every https URL.
    pub quic: Option<bool>,
    /// Consent given for unattended runs.
    pub consent: Option<bool>,
    /// `km` or `en`.
    pub lang: Option<String>,
    /// Never show a progress bar.
    pub no_progress: Option<bool>,
    /// Collector URL to upload every measurement to.
    pub upload: Option<String>,
    /// Record verdicts in the local history database (default true).
    pub history: Option<bool>,
    /// Wait a random time up to this long before starting.
    pub random_delay: Option<String>,
    /// A directory of OONI-format blocking fingerprints.
    pub fingerprints: Option<PathBuf>,
    /// STUN server for learning the public address, or `none`.
    pub stun: Option<String>,
    /// What an unattended run does when no control answers before it
    /// starts: `continue` (default; most verdicts will be inconclusive) or
    /// `stop` (exit code 69, nothing measured).
    pub on_no_control: Option<String>,
    /// Reference targets of the network checks, or `none`.
    #[serde(default)]
    pub reference: Vec<String>,
    /// How often the network checks run during a run.
    pub recheck_interval: Option<String>,
}

impl FileConfig {
    /// Reads and parses a config file.
    pub fn load(path: &Path) -> Result<FileConfig, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|e| ConfigError::Read {
            path: path.to_path_buf(),
            source: e,
        })?;
        toml::from_str(&text).map_err(|e| ConfigError::Parse {
            path: path.to_path_buf(),
            reason: e.to_string(),
        })
    }
}

/// Everything a run needs, flags and config merged.
#[derive(Clone, Debug)]
pub struct RunSettings {
    /// Positional URLs.
    pub urls: Vec<String>,
    /// Input files.
    pub input_files: Vec<PathBuf>,
    /// `--list`.
    pub list: Option<String>,
    /// Upper-case category codes to keep (empty: all).
    pub categories: Vec<String>,
    /// URLs at a time.
    pub parallel: usize,
    /// Results file (`None`: a dated file under the data directory).
    pub output: Option<PathBuf>,
    /// Continue into the output file.
    pub resume: bool,
    /// Summary file.
    pub json_summary: Option<PathBuf>,
    /// `probe_asn` override.
    pub probe_asn: Option<String>,
    /// `probe_cc` override.
    pub probe_cc: Option<String>,
    /// ASN database.
    pub asn_db: Option<PathBuf>,
    /// Country database.
    pub country_db: Option<PathBuf>,
    /// Extra trust anchors.
    pub ca_files: Vec<PathBuf>,
    /// Ranges treated as public addresses.
    pub treat_as_public: Vec<IpNet>,
    /// UDP resolvers (empty: the measurement's default).
    pub resolvers: Vec<SocketAddr>,
    /// DoH URLs.
    pub doh: Vec<String>,
    /// Ask the system resolver.
    pub system_resolver: bool,
    /// Control URLs (empty: the default control); `none` disables it.
    pub control: Vec<String>,
    /// DNS timeout.
    pub dns_timeout: Duration,
    /// TCP timeout.
    pub tcp_timeout: Duration,
    /// TLS timeout.
    pub tls_timeout: Duration,
    /// HTTP timeout.
    pub http_timeout: Duration,
    /// Whole-URL deadline.
    pub url_deadline: Duration,
    /// `--trace-blocked`.
    pub trace_blocked: bool,
    /// `--quic`: QUIC handshakes for every https URL.
    pub quic: bool,
    /// `--yes` or `consent = true`.
    pub consent: bool,
    /// Language of the consent text and the summary.
    pub lang: Lang,
    /// `--no-progress`.
    pub no_progress: bool,
    /// `--upload URL`.
    pub upload: Option<String>,
    /// Record verdicts in the history database.
    pub history: bool,
    /// `--random-delay` (zero: none).
    pub random_delay: Duration,
    /// `--fingerprints DIR`.
    pub fingerprints: Option<PathBuf>,
    /// The STUN server to ask for the public address (`None`: don't).
    pub stun: Option<String>,
    /// Stop (rather than continue) when no control answers the preflight.
    pub stop_without_control: bool,
    /// `--reference URL` (empty: the control's host and the neutral
    /// defaults; `none` alone: no network checks).
    pub references: Vec<String>,
    /// `--recheck-interval` (network checks during the run).
    pub recheck_interval: Duration,
}

impl RunSettings {
    /// True when `--control none` was given.
    pub fn control_disabled(&self) -> bool {
        self.control.iter().any(|c| c.eq_ignore_ascii_case("none"))
    }
}

/// Merges flags over the config file.
pub fn resolve(args: &RunArgs, file: FileConfig) -> Result<RunSettings, ConfigError> {
    fn pick<T>(flag: Vec<T>, file: Vec<T>) -> Vec<T> {
        if flag.is_empty() {
            file
        } else {
            flag
        }
    }
    fn dur(
        key: &'static str,
        flag: Option<humantime::Duration>,
        file: Option<String>,
        default: Duration,
    ) -> Result<Duration, ConfigError> {
        let d = match (flag, file) {
            (Some(f), _) => f.into(),
            (None, Some(s)) => humantime::parse_duration(&s).map_err(|e| ConfigError::Value {
                key,
                reason: format!("{s:?}: {e}"),
            })?,
            (None, None) => default,
        };
        if d.is_zero() {
            return Err(ConfigError::Value {
                key,
                reason: "must be more than zero".to_string(),
            });
        }
        Ok(d)
    }

    let parallel = args.parallel.or(file.parallel).unwrap_or(DEFAULT_PARALLEL);
    if parallel == 0 || parallel > MAX_PARALLEL {
        return Err(ConfigError::Value {
            key: "parallel",
            reason: format!("{parallel} is not between 1 and {MAX_PARALLEL}"),
        });
    }
    let categories: Vec<String> = pick(args.category.clone(), file.category)
        .iter()
        .flat_map(|c| c.split(','))
        .map(|c| c.trim().to_ascii_uppercase())
        .filter(|c| !c.is_empty())
        .collect();
    let treat_as_public = pick(
        args.probe
            .treat_as_public
            .iter()
            .map(|n| n.to_string())
            .collect(),
        file.treat_as_public,
    )
    .iter()
    .map(|s| {
        parse_cidr(s).map_err(|reason| ConfigError::Value {
            key: "treat_as_public",
            reason,
        })
    })
    .collect::<Result<Vec<_>, _>>()?;
    let resolvers = pick(args.probe.resolver.clone(), file.resolver)
        .iter()
        .map(|s| {
            parse_resolver(s).map_err(|reason| ConfigError::Value {
                key: "resolver",
                reason,
            })
        })
        .collect::<Result<Vec<_>, _>>()?;
    let doh = pick(args.probe.doh.clone(), file.doh);
    if let Some(d) = doh.iter().find(|d| !is_http_url(d)) {
        return Err(ConfigError::Value {
            key: "doh",
            reason: format!("{d:?} is not an http(s) URL"),
        });
    }
    let references = pick(args.probe.reference.clone(), file.reference);
    if let Some(r) = references
        .iter()
        .find(|r| !r.eq_ignore_ascii_case("none") && !is_http_url(r))
    {
        return Err(ConfigError::Value {
            key: "reference",
            reason: format!("{r:?} is not an http(s) URL (or `none`)"),
        });
    }
    let control = pick(args.probe.control.clone(), file.control);
    if let Some(c) = control
        .iter()
        .find(|c| !c.eq_ignore_ascii_case("none") && !is_http_url(c))
    {
        return Err(ConfigError::Value {
            key: "control",
            reason: format!("{c:?} is neither an http(s) URL nor `none`"),
        });
    }
    let probe_asn = args.probe.probe_asn.clone().or(file.probe_asn);
    if let Some(a) = &probe_asn {
        let ok = a
            .strip_prefix("AS")
            .is_some_and(|n| !n.is_empty() && n.parse::<u32>().is_ok());
        if !ok {
            return Err(ConfigError::Value {
                key: "probe_asn",
                reason: format!("{a:?} is not of the form AS<number>"),
            });
        }
    }
    let probe_cc = args.probe.probe_cc.clone().or(file.probe_cc);
    if let Some(cc) = &probe_cc {
        if cc.len() != 2 || !cc.chars().all(|c| c.is_ascii_uppercase()) {
            return Err(ConfigError::Value {
                key: "probe_cc",
                reason: format!("{cc:?} is not two upper-case letters"),
            });
        }
    }
    let upload = args.upload.clone().or(file.upload);
    if let Some(u) = upload.as_ref().filter(|u| !is_http_url(u)) {
        return Err(ConfigError::Value {
            key: "upload",
            reason: format!("{u:?} is not an http(s) URL"),
        });
    }
    let random_delay = match (args.random_delay, &file.random_delay) {
        (Some(d), _) => d.into(),
        (None, Some(s)) => humantime::parse_duration(s).map_err(|e| ConfigError::Value {
            key: "random_delay",
            reason: format!("{s:?}: {e}"),
        })?,
        (None, None) => Duration::ZERO,
    };
    let lang = match args.lang.or(file
        .lang
        .as_deref()
        .map(|l| {
            Lang::parse(l).ok_or_else(|| ConfigError::Value {
                key: "lang",
                reason: format!("{l:?} is neither km nor en"),
            })
        })
        .transpose()?)
    {
        Some(l) => l,
        None => Lang::from_env(),
    };
    Ok(RunSettings {
        urls: args.urls.clone(),
        input_files: pick(args.input_file.clone(), file.input_file),
        list: args.list.clone().or(file.list),
        categories,
        parallel,
        output: args.output.clone().or(file.output),
        resume: args.resume,
        json_summary: args.json_summary.clone().or(file.json_summary),
        probe_asn,
        probe_cc,
        // Else what `gatewatch geo update` downloaded, when it is there.
        asn_db: args
            .probe
            .asn_db
            .clone()
            .or(file.asn_db)
            .or_else(crate::geo::default_asn_db),
        country_db: args
            .probe
            .country_db
            .clone()
            .or(file.country_db)
            .or_else(crate::geo::default_country_db),
        ca_files: pick(args.probe.ca_file.clone(), file.ca_file),
        treat_as_public,
        resolvers,
        doh,
        system_resolver: !args.probe.no_system_resolver && file.system_resolver.unwrap_or(true),
        control,
        dns_timeout: dur(
            "dns_timeout",
            args.probe.dns_timeout,
            file.dns_timeout,
            Duration::from_secs(4),
        )?,
        tcp_timeout: dur(
            "tcp_timeout",
            args.probe.tcp_timeout,
            file.tcp_timeout,
            Duration::from_secs(10),
        )?,
        tls_timeout: dur(
            "tls_timeout",
            args.probe.tls_timeout,
            file.tls_timeout,
            Duration::from_secs(10),
        )?,
        http_timeout: dur(
            "http_timeout",
            args.probe.http_timeout,
            file.http_timeout,
            Duration::from_secs(10),
        )?,
        url_deadline: dur(
            "url_deadline",
            args.probe.url_deadline,
            file.url_deadline,
            Duration::from_secs(60),
        )?,
        trace_blocked: args.probe.trace_blocked || file.trace_blocked.unwrap_or(false),
        quic: args.probe.quic || file.quic.unwrap_or(false),
        consent: args.yes || file.consent.unwrap_or(false),
        lang,
        no_progress: args.no_progress || file.no_progress.unwrap_or(false),
        upload,
        history: !args.no_history && file.history.unwrap_or(true),
        random_delay,
        fingerprints: args.probe.fingerprints.clone().or(file.fingerprints),
        stun: match args.probe.stun.clone().or(file.stun) {
            Some(s) if s.eq_ignore_ascii_case("none") => None,
            Some(s) => Some(s),
            None => Some(super::publicip::DEFAULT_STUN.to_string()),
        },
        stop_without_control: match file.on_no_control.as_deref() {
            None | Some("continue") => false,
            Some("stop") => true,
            Some(other) => {
                return Err(ConfigError::Value {
                    key: "on_no_control",
                    reason: format!("{other:?}: use \"continue\" or \"stop\""),
                })
            }
        },
        references,
        recheck_interval: dur(
            "recheck_interval",
            args.probe.recheck_interval,
            file.recheck_interval,
            super::netcheck::RECHECK_INTERVAL,
        )?,
    })
}

/// True for an `http://` or `https://` URL.
fn is_http_url(s: &str) -> bool {
    url::Url::parse(s).is_ok_and(|u| matches!(u.scheme(), "http" | "https"))
}

/// Parses `IP[:PORT]` (`[v6]:port` for IPv6 with a port); the port
/// defaults to 53.
pub fn parse_resolver(s: &str) -> Result<SocketAddr, String> {
    let s = s.trim();
    if let Ok(sa) = s.parse::<SocketAddr>() {
        return Ok(sa);
    }
    if let Ok(ip) = s.trim_matches(['[', ']']).parse::<std::net::IpAddr>() {
        return Ok(SocketAddr::new(ip, 53));
    }
    Err(format!("{s:?} is not IP[:PORT]"))
}

/// Parses a CIDR (a bare address is a /32 or /128).
pub fn parse_cidr(s: &str) -> Result<IpNet, String> {
    let s = s.trim();
    s.parse::<IpNet>()
        .or_else(|_| s.parse::<std::net::IpAddr>().map(IpNet::from))
        .map_err(|_| format!("{s:?} is not a CIDR range"))
}

/// `$XDG_CONFIG_HOME/gatewatch` (or the platform's equivalent).
pub fn config_dir() -> Option<PathBuf> {
    dirs::config_dir().map(|d| d.join("gatewatch"))
}

/// `$XDG_DATA_HOME/gatewatch` (or the platform's equivalent).
pub fn data_dir() -> Option<PathBuf> {
    dirs::data_dir().map(|d| d.join("gatewatch"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct T {
        #[command(flatten)]
        a: RunArgs,
    }

    fn args(v: &[&str]) -> RunArgs {
        T::parse_from(std::iter::once("t").chain(v.iter().copied())).a
    }

    #[test]
    fn flags_override_the_file() {
        let file: FileConfig = toml::from_str(
            "parallel = 4\ndns_timeout = \"2s\"\nresolver = [\"192.0.2.1\"]\nconsent = true\ncategory = [\"news\"]\n",
        )
        .unwrap();
        let s = resolve(
            &args(&["--parallel", "8", "--resolver", "127.0.0.1:5353"]),
            file,
        )
        .unwrap();
        assert_eq!(s.parallel, 8);
        assert_eq!(s.dns_timeout, Duration::from_secs(2));
        assert_eq!(s.tcp_timeout, Duration::from_secs(10));
        assert_eq!(s.resolvers, vec!["127.0.0.1:5353".parse().unwrap()]);
        assert!(s.consent);
        assert_eq!(s.categories, vec!["NEWS"]);
    }

    #[test]
    fn defaults_and_errors() {
        let s = resolve(&args(&[]), FileConfig::default()).unwrap();
        assert_eq!(s.parallel, DEFAULT_PARALLEL);
        assert!(!s.consent);
        let e = resolve(&args(&["--parallel", "0"]), FileConfig::default()).unwrap_err();
        assert!(e.to_string().contains("parallel"), "{e}");
        let e = resolve(&args(&["--probe-asn", "12"]), FileConfig::default()).unwrap_err();
        assert!(e.to_string().contains("AS<number>"), "{e}");
        assert!(toml::from_str::<FileConfig>("paralel = 3").is_err());
        assert_eq!(
            parse_resolver("[::1]").unwrap(),
            "[::1]:53".parse().unwrap()
        );
        assert_eq!(
            parse_resolver("9.9.9.9").unwrap(),
            "9.9.9.9:53".parse().unwrap()
        );
    }

    #[test]
    fn quic_from_the_flag_or_the_file() {
        assert!(!resolve(&args(&[]), FileConfig::default()).unwrap().quic);
        assert!(
            resolve(&args(&["--quic"]), FileConfig::default())
                .unwrap()
                .quic
        );
        let file: FileConfig = toml::from_str("quic = true\n").unwrap();
        assert!(resolve(&args(&[]), file).unwrap().quic);
    }
}
