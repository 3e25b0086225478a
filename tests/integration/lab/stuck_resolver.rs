//! Issue 16 with the real binary and a real getaddrinfo: in a namespace of
//! its own, the system resolver (`/etc/netns/<ns>/resolv.conf`) is a DNS
//! server on 127.0.0.1:53 that never answers `stuck-*` names, and glibc is
//! told to wait 30 s × 5 attempts, so each such getaddrinfo call hangs for
//! minutes. The run must neither blame the network for our own lookup
//! limit nor hang at the end or on SIGTERM.

use std::collections::BTreeMap;
use std::io::Read as _;
use std::net::{Ipv4Addr, SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::time::{Duration, Instant};

use hickory_proto::op::{Message, ResponseCode};
use serde_json::Value;

use super::dns::{host_of, reply};
use super::netns::{Lab, Ns};

const GATEWATCH: &str = env!("CARGO_BIN_EXE_gatewatch");
/// A process still alive this long after it should have ended has hung
/// (a generous bound, not a speed claim).
const HUNG: Duration = Duration::from_secs(90);

/// The namespace, its servers and a scratch directory.
struct Stuck {
    lab: Lab,
    ns: Ns,
    dir: tempfile::TempDir,
}

impl Stuck {
    fn start_or_skip() -> Option<Stuck> {
        let lab = Lab::new_or_skip(&[])?;
        let ns = lab.add_ns("stuck").expect("namespace");
        let etc = PathBuf::from("/etc/netns").join(ns.name());
        std::fs::create_dir_all(&etc).unwrap();
        std::fs::write(
            etc.join("resolv.conf"),
            "nameserver 127.0.0.1\noptions timeout:30 attempts:5\n",
        )
        .unwrap();
        std::fs::write(etc.join("hosts"), "127.0.0.1 localhost\n").unwrap();
        // DNS: silent for stuck-* names, 127.0.0.1 for the rest.
        let dns = ns
            .serve(
                || {
                    let s = std::net::UdpSocket::bind("127.0.0.1:53")?;
                    s.set_nonblocking(true)?;
                    tokio::net::UdpSocket::from_std(s)
                },
                |sock, _stop| async move {
                    let mut buf = vec![0u8; 4096];
                    while let Ok((n, from)) = sock.recv_from(&mut buf).await {
                        let Ok(q) = Message::from_vec(&buf[..n]) else {
                            continue;
                        };
                        let host = host_of(&q).unwrap_or_default();
                        if host.starts_with("stuck-") {
                            continue;
                        }
                        let out = reply(&q, ResponseCode::NoError, Some(Ipv4Addr::LOCALHOST));
                        let _ = sock.send_to(&out, from).await;
                    }
                },
            )
            .expect("dns server");
        lab.keep(dns);
        // The sites: one page for every good name.
        let web = ns
            .serve(
                || {
                    let l = std::net::TcpListener::bind("127.0.0.1:80")?;
                    l.set_nonblocking(true)?;
                    tokio::net::TcpListener::from_std(l)
                },
                |l, _stop| async move {
                    use tokio::io::{AsyncReadExt, AsyncWriteExt};
                    while let Ok((mut c, _)) = l.accept().await {
                        tokio::spawn(async move {
                            let mut buf = vec![0u8; 4096];
                            let _ = c.read(&mut buf).await;
                            let body = "<html><head><title>A good site</title></head><body>fine fine fine</body></html>";
                            let head = format!(
                                "HTTP/1.1 200 OK\r\nContent-Type: text/html\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                                body.len()
                            );
                            let _ = c.write_all(head.as_bytes()).await;
                            let _ = c.write_all(body.as_bytes()).await;
                        });
                    }
                },
            )
            .expect("web server");
        lab.keep(web);
        let dir = tempfile::tempdir().unwrap();
        Some(Stuck { lab, ns, dir })
    }

    /// `gatewatch control serve` on 127.0.0.1:9000 in the namespace.
    fn start_control(&self) -> String {
        let listen = "127.0.0.1:9000";
        let args = [
            "control",
            "serve",
            "--listen",
            listen,
            "--treat-as-public",
            "127.0.0.0/8",
            "--resolver",
            "127.0.0.1:53",
        ];
        self.lab
            .spawn(&self.ns, Path::new(GATEWATCH), &args)
            .unwrap();
        let addr: SocketAddr = listen.parse().unwrap();
        let up = self
            .ns
            .thread(move || {
                let deadline = Instant::now() + Duration::from_secs(20);
                while Instant::now() < deadline {
                    if TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok() {
                        return true;
                    }
                    std::thread::sleep(Duration::from_millis(100));
                }
                false
            })
            .unwrap()
            .join()
            .unwrap();
        assert!(up, "the control server did not start");
        format!("http://{listen}")
    }

    fn run(&self, urls: &[String], control: &str, out: &Path, dns_timeout: &str) -> Command {
        let list = self.dir.path().join("list.txt");
        let mut text = String::new();
        for u in urls {
            text.push_str(u);
            text.push('\n');
        }
        std::fs::write(&list, text).unwrap();
        let mut c = self.ns.command(GATEWATCH);
        c.arg("run")
            .args(["--stun", "none", "--control", control])
            .arg("--input-file")
            .arg(&list)
            .args([
                "--resolver",
                "127.0.0.1:53",
                "--treat-as-public",
                "127.0.0.0/8",
            ])
            .args(["--dns-timeout", dns_timeout, "--tcp-timeout", "3s"])
            .args(["--tls-timeout", "3s", "--http-timeout", "5s"])
            .args(["--url-deadline", "30s", "--parallel", "8"])
            .args(["--probe-asn", "AS64496", "--probe-cc", "ZZ"])
            .args(["--yes", "--no-progress", "--lang", "en"])
            .arg("--output")
            .arg(out)
            .env("XDG_CONFIG_HOME", self.dir.path().join("config"))
            .env("XDG_DATA_HOME", self.dir.path().join("data"))
            .env("HOME", self.dir.path());
        c
    }

    fn spawn(&self, cmd: Command) -> Child {
        let pid = self.lab.spawn_command(cmd).unwrap();
        self.lab.take_child(pid).expect("the run")
    }
}

/// Waits for `child` to exit; kills it if it is still alive after
/// [`HUNG`] (then `Err`). Returns its status and stderr.
fn wait_or_kill(
    mut child: Child,
    what: &str,
) -> Result<(std::process::ExitStatus, String), String> {
    let deadline = Instant::now() + HUNG;
    let hung = loop {
        if child.try_wait().unwrap().is_some() {
            break false;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            break true;
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    let status = child.wait().unwrap();
    let mut err = String::new();
    if let Some(mut e) = child.stderr.take() {
        let _ = e.read_to_string(&mut err);
    }
    if hung {
        return Err(format!(
            "{what}: still running {HUNG:?} after it should have ended (killed)\n{err}"
        ));
    }
    Ok((status, err))
}

fn results(p: &Path) -> BTreeMap<String, Value> {
    std::fs::read_to_string(p)
        .unwrap_or_default()
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter_map(|v| Some((v["input"].as_str()?.to_string(), v)))
        .collect()
}

/// 40 names whose getaddrinfo hangs, then 12 good URLs: the good URLs are
/// measured as accessible (not `blocked` by `dns.timeout`), and the run
/// exits although 40 getaddrinfo calls are still stuck.
#[test]
fn stuck_getaddrinfo_calls_neither_blame_the_network_nor_hang_the_run() {
    let Some(stuck) = Stuck::start_or_skip() else {
        return;
    };
    let control = stuck.start_control();
    let mut urls: Vec<String> = (0..40)
        .map(|i| format!("http://stuck-{i}.example/"))
        .collect();
    let good: Vec<String> = (0..12)
        .map(|i| format!("http://good-{i}.example/"))
        .collect();
    urls.extend(good.iter().cloned());
    let out = stuck.dir.path().join("out.jsonl");
    let started = Instant::now();
    let child = stuck.spawn(stuck.run(&urls, &control, &out, "2s"));
    let mut wrong = Vec::new();
    let ended = wait_or_kill(child, "a run with stuck getaddrinfo calls");
    println!(
        "stuck resolver: {} URLs, the process ended after {:.1}s",
        urls.len(),
        started.elapsed().as_secs_f64()
    );
    match ended {
        Ok((status, _)) if status.success() => {}
        Ok((status, stderr)) => wrong.push(format!("the run failed: {status}\n{stderr}")),
        Err(hung) => wrong.push(hung),
    }
    let res = results(&out);
    assert_eq!(res.len(), urls.len(), "{wrong:?}");
    for u in &good {
        let tk = &res[u]["test_keys"];
        let status = tk["x_verdict"]["status"].as_str().unwrap_or("");
        if status != "accessible" || tk["blocking"] != Value::Bool(false) {
            wrong.push(format!(
                "{u}: {status} {} {}",
                tk["blocking"], tk["x_verdict"]["evidence"]
            ));
        }
    }
    assert!(
        wrong.is_empty(),
        "good URLs judged wrongly:\n{}",
        wrong.join("\n")
    );
    // The stuck names themselves: the system lookup ran its full timeout
    // (a real `generic_timeout_error`) or never ran (our limit, skipped);
    // never anything else.
    for i in 0..40 {
        let tk = &res[&format!("http://stuck-{i}.example/")]["test_keys"];
        let sys: Vec<&str> = tk["queries"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|q| q["engine"] == "getaddrinfo")
            .map(|q| q["failure"].as_str().unwrap_or("none"))
            .collect();
        assert!(
            sys.iter()
                .all(|f| *f == "generic_timeout_error" || *f == "x_probe_resource_limit"),
            "stuck-{i}: {sys:?}"
        );
    }
}

/// SIGTERM while getaddrinfo calls hang (and our own lookup timeout is
/// long): the run ends (exit 130) and its lock is free for the next run.
#[test]
fn sigterm_ends_a_run_stuck_in_getaddrinfo_and_frees_the_lock() {
    let Some(stuck) = Stuck::start_or_skip() else {
        return;
    };
    let urls: Vec<String> = (0..10)
        .map(|i| format!("http://stuck-{i}.example/"))
        .collect();
    let out = stuck.dir.path().join("out.jsonl");
    let mut child = stuck.spawn(stuck.run(&urls, "none", &out, "600s"));
    // Wait until the run holds its lock (it is measuring), then SIGTERM.
    let lock = stuck.dir.path().join("data/gatewatch/run.lock");
    let deadline = Instant::now() + HUNG;
    while !lock.exists() {
        assert!(child.try_wait().unwrap().is_none(), "the run ended early");
        assert!(Instant::now() < deadline, "the run never took its lock");
        std::thread::sleep(Duration::from_millis(50));
    }
    std::thread::sleep(Duration::from_secs(2));
    assert!(
        child.try_wait().unwrap().is_none(),
        "the run ended before SIGTERM"
    );
    // `ip netns exec` runs gatewatch in its own process (exec): the pid is
    // the run's.
    let killed = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(killed.success());
    let signalled = Instant::now();
    let (status, stderr) = wait_or_kill(child, "a run stuck in getaddrinfo after SIGTERM")
        .unwrap_or_else(|e| panic!("{e}"));
    println!(
        "stuck resolver: exit {:?} {:.1}s after SIGTERM",
        status.code(),
        signalled.elapsed().as_secs_f64()
    );
    assert_eq!(status.code(), Some(130), "{stderr}");
    gatewatch::schedule::RunLock::acquire(&stuck.dir.path().join("data/gatewatch"))
        .expect("the run lock is free after the run ended");
}
