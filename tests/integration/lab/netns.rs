//! A small, reusable API over Linux network namespaces for root-only tests.
//!
//! [`Lab`] owns every namespace it creates and deletes them all when dropped
//! — also when the test panics — after stopping the in-namespace servers and
//! killing the processes it started there. Namespace names carry a unique
//! prefix (`gwlab-<pid>-<n>-`), so parallel tests and parallel `cargo test`
//! runs never clash, and [`Lab::new`] first removes stale labs left behind by
//! runs that were killed (their pid is gone).
//!
//! Hygiene rules the API enforces by construction: veth pairs are created
//! directly between two lab namespaces (never in the host's namespace), and
//! nothing here adds a default route; callers add routes to documentation
//! ranges only.
//!
//! ```ignore
//! let Some(lab) = Lab::new_or_skip(&["nft"]) else { return };
//! let a = lab.add_ns("a")?;
//! let b = lab.add_ns("b")?;
//! lab.link(&a, "eth0", "192.0.2.9/29", &b, "eth0", "192.0.2.10/29")?;
//! let out = a.exec("ping", &["-c1", "192.0.2.10"])?;
//! let srv = b.serve(|| std::net::TcpListener::bind("192.0.2.10:80"),
//!                   |l, stop| async move { /* tokio server until stop */ })?;
//! ```

use std::ffi::OsStr;
use std::fs::File;
use std::future::Future;
use std::io::{self, Write};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{mpsc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use nix::sched::{setns, CloneFlags};
use tokio_util::sync::CancellationToken;

/// Every lab namespace name starts with this.
pub const PREFIX: &str = "gwlab-";

/// Why the lab cannot run here, or `None` when it can: the lab needs root,
/// `ip`, and the extra tools named (e.g. `nft`, `iptables`, `tc`).
pub fn unavailable(tools: &[&str]) -> Option<String> {
    // /proc/self belongs to the process's effective uid.
    let root = std::fs::metadata("/proc/self").is_ok_and(|m| m.uid() == 0);
    if !root {
        return Some("needs root".into());
    }
    let missing: Vec<&str> = std::iter::once("ip")
        .chain(tools.iter().copied())
        .filter(|t| find_tool(t).is_none())
        .collect();
    if missing.is_empty() {
        None
    } else {
        Some(format!("missing {}", missing.join(", ")))
    }
}

/// A set of namespaces created together and deleted together.
pub struct Lab {
    prefix: String,
    namespaces: Mutex<Vec<Ns>>,
    services: Mutex<Vec<Service>>,
    children: Mutex<Vec<Child>>,
}

impl Lab {
    /// Starts a lab, or prints one clear skip line and returns `None` when
    /// not root or a tool is missing (so the test passes as a skip).
    pub fn new_or_skip(tools: &[&str]) -> Option<Lab> {
        if let Some(why) = unavailable(tools) {
            let mut need = vec!["ip"];
            need.extend_from_slice(tools);
            println!(
                "lab skipped: needs root and {} (here: {why})",
                need.join("/")
            );
            return None;
        }
        Some(Lab::new().expect("create the namespace lab"))
    }

    /// Starts a lab with a fresh unique prefix, after removing stale labs
    /// from killed runs.
    pub fn new() -> io::Result<Lab> {
        static COUNTER: AtomicUsize = AtomicUsize::new(0);
        clean_stale();
        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        Ok(Lab {
            prefix: format!("{PREFIX}{}-{n}-", std::process::id()),
            namespaces: Mutex::new(Vec::new()),
            services: Mutex::new(Vec::new()),
            children: Mutex::new(Vec::new()),
        })
    }

    /// The unique prefix of this lab's namespace names.
    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// Creates namespace `<prefix><role>` with its loopback up.
    pub fn add_ns(&self, role: &str) -> io::Result<Ns> {
        let ns = Ns {
            name: format!("{}{role}", self.prefix),
        };
        run(Command::new("ip").args(["netns", "add", &ns.name]))?;
        lock(&self.namespaces).push(ns.clone());
        ns.ip(&["link", "set", "lo", "up"])?;
        Ok(ns)
    }

    /// Connects `a` and `b` with a veth pair created directly between the two
    /// namespaces, assigns the addresses (CIDR notation) and brings both ends
    /// up. Interface names are per namespace (at most 15 bytes).
    pub fn link(
        &self,
        a: &Ns,
        a_if: &str,
        a_cidr: &str,
        b: &Ns,
        b_if: &str,
        b_cidr: &str,
    ) -> io::Result<()> {
        a.ip(&[
            "link", "add", a_if, "type", "veth", "peer", "name", b_if, "netns", &b.name,
        ])?;
        a.ip(&["addr", "add", a_cidr, "dev", a_if])?;
        b.ip(&["addr", "add", b_cidr, "dev", b_if])?;
        a.ip(&["link", "set", a_if, "up"])?;
        b.ip(&["link", "set", b_if, "up"])?;
        Ok(())
    }

    /// Spawns `program args` inside `ns` (stdout/stderr piped) and keeps it:
    /// it is killed when the lab is dropped, if still running.
    pub fn spawn<S: AsRef<OsStr>>(&self, ns: &Ns, program: &Path, args: &[S]) -> io::Result<u32> {
        let mut cmd = ns.command(program);
        cmd.args(args);
        self.spawn_command(cmd)
    }

    /// Spawns a prepared command (e.g. from [`Ns::command`]; stdin null,
    /// stdout/stderr piped) and keeps it like [`Lab::spawn`].
    pub fn spawn_command(&self, mut cmd: Command) -> io::Result<u32> {
        let child = cmd
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()?;
        let pid = child.id();
        lock(&self.children).push(child);
        Ok(pid)
    }

    /// Takes back a child started with [`Lab::spawn`] (to wait for it, kill
    /// it or read its output). `None` if unknown.
    pub fn take_child(&self, pid: u32) -> Option<Child> {
        let mut children = lock(&self.children);
        let i = children.iter().position(|c| c.id() == pid)?;
        Some(children.swap_remove(i))
    }

    /// Keeps a service running until the lab is dropped.
    pub fn keep(&self, service: Service) {
        lock(&self.services).push(service);
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        // Servers first (they hold sockets in the namespaces), then processes,
        // then the namespaces and their /etc/netns files.
        let services = std::mem::take(&mut *lock(&self.services));
        for s in &services {
            s.stop.cancel();
        }
        drop(services);
        for mut c in std::mem::take(&mut *lock(&self.children)) {
            let _ = c.kill();
            let _ = c.wait();
        }
        for ns in std::mem::take(&mut *lock(&self.namespaces)).iter().rev() {
            delete_ns(&ns.name);
        }
    }
}

/// One network namespace of a [`Lab`]. Cheap to clone; the lab deletes it.
#[derive(Clone, Debug)]
pub struct Ns {
    name: String,
}

impl Ns {
    /// The namespace's name (as `ip netns` knows it).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// `ip -n <ns> args...`; returns stdout, or an error carrying stderr.
    pub fn ip(&self, args: &[&str]) -> io::Result<String> {
        run(Command::new("ip").arg("-n").arg(&self.name).args(args))
    }

    /// Sets a device's MTU.
    pub fn set_mtu(&self, dev: &str, mtu: u32) -> io::Result<()> {
        self.ip(&["link", "set", "dev", dev, "mtu", &mtu.to_string()])
            .map(drop)
    }

    /// Adds an address (CIDR) to a device, e.g. a site's `/32` on `lo`.
    pub fn add_addr(&self, dev: &str, cidr: &str) -> io::Result<()> {
        self.ip(&["addr", "add", cidr, "dev", dev]).map(drop)
    }

    /// Adds a route to `dst` (CIDR) via the gateway `via`.
    pub fn add_route(&self, dst: &str, via: &str) -> io::Result<()> {
        self.ip(&["route", "add", dst, "via", via]).map(drop)
    }

    /// Turns IPv4 forwarding on (this namespace becomes a router).
    pub fn enable_forwarding(&self) -> io::Result<()> {
        self.sh("echo 1 > /proc/sys/net/ipv4/ip_forward").map(drop)
    }

    /// Runs `program args` in the namespace and waits; returns stdout, or an
    /// error carrying the exit status and stderr.
    pub fn exec<S: AsRef<OsStr>>(&self, program: &str, args: &[S]) -> io::Result<String> {
        run(self.command(program).args(args))
    }

    /// Runs a `sh -c` script in the namespace.
    pub fn sh(&self, script: &str) -> io::Result<String> {
        self.exec("sh", &["-c", script])
    }

    /// Loads an nftables ruleset (`nft -f -`) in the namespace.
    pub fn nft(&self, ruleset: &str) -> io::Result<()> {
        let mut child = self
            .command("nft")
            .args(["-f", "-"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()?;
        child
            .stdin
            .take()
            .expect("piped stdin")
            .write_all(ruleset.as_bytes())?;
        check(
            child.wait_with_output()?,
            &format!("nft -f - in {}", self.name),
        )
        .map_err(|e| io::Error::other(format!("{e}\nruleset:\n{ruleset}")))
        .map(drop)
    }

    /// A `Command` that runs `program` inside the namespace (through
    /// `ip netns exec`, which also bind-mounts `/etc/netns/<ns>/*` over
    /// `/etc`). Spawn it yourself, or use [`Lab::spawn`] to have it killed
    /// with the lab.
    pub fn command<S: AsRef<OsStr>>(&self, program: S) -> Command {
        let mut c = Command::new("ip");
        c.args(["netns", "exec", &self.name]).arg(program);
        c
    }

    /// Writes `/etc/netns/<ns>/resolv.conf` so processes started in the
    /// namespace resolve through `nameserver` (the lab removes it).
    pub fn set_resolv_conf(&self, nameserver: &str) -> io::Result<()> {
        let dir = etc_dir(&self.name);
        std::fs::create_dir_all(&dir)?;
        std::fs::write(
            dir.join("resolv.conf"),
            format!("nameserver {nameserver}\noptions timeout:2 attempts:1\n"),
        )?;
        // getaddrinfo also reads hosts and nsswitch.conf: keep them minimal
        // so no host-specific name leaks in.
        std::fs::write(dir.join("hosts"), "127.0.0.1 localhost\n")?;
        Ok(())
    }

    /// Runs `f` on a new thread that has entered this namespace: every
    /// socket it opens lives here. Errors entering the namespace are
    /// returned before `f` runs.
    pub fn thread<F, R>(&self, f: F) -> io::Result<JoinHandle<R>>
    where
        F: FnOnce() -> R + Send + 'static,
        R: Send + 'static,
    {
        let file = File::open(Path::new("/run/netns").join(&self.name))?;
        let (tx, rx) = mpsc::channel();
        let handle = std::thread::Builder::new()
            .name(format!("ns:{}", self.name))
            .spawn(move || {
                let entered = setns(&file, CloneFlags::CLONE_NEWNET).map_err(io::Error::from);
                let failed = entered.as_ref().err().map(ToString::to_string);
                let _ = tx.send(entered);
                // Never run `f` in the host's namespace; the caller already
                // got the error, so ending this thread is all that is left.
                if let Some(e) = failed {
                    panic!("setns: {e}");
                }
                f()
            })?;
        rx.recv()
            .map_err(|_| io::Error::other("namespace thread died"))??;
        Ok(handle)
    }

    /// Starts an in-process server inside this namespace: `bind` runs first
    /// on the namespace's thread (bind std sockets there; its error is
    /// returned here, so the server is listening when this returns), then
    /// `run` is driven by a current-thread tokio runtime until it returns or
    /// the [`Service`] is stopped (its token is cancelled).
    pub fn serve<T, B, F, Fut>(&self, bind: B, run: F) -> io::Result<Service>
    where
        B: FnOnce() -> io::Result<T> + Send + 'static,
        F: FnOnce(T, CancellationToken) -> Fut + Send + 'static,
        Fut: Future<Output = ()>,
    {
        self.serve_blocking(
            move || {
                let rt = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()?;
                // Bind inside the runtime so `bind` may also create tokio sockets.
                let value = {
                    let _guard = rt.enter();
                    bind()?
                };
                Ok((rt, value))
            },
            move |(rt, value), token| {
                rt.block_on(async {
                    tokio::select! {
                        () = run(value, token.clone()) => {}
                        () = token.cancelled() => {}
                    }
                });
            },
        )
    }

    /// Like [`Ns::serve`] for blocking code: `run` gets the bound value and
    /// the stop token on the namespace's thread, and must return soon after
    /// the token is cancelled (poll it between blocking calls with a
    /// timeout).
    pub fn serve_blocking<T, B, F>(&self, bind: B, run: F) -> io::Result<Service>
    where
        B: FnOnce() -> io::Result<T> + Send + 'static,
        F: FnOnce(T, CancellationToken) + Send + 'static,
    {
        let stop = CancellationToken::new();
        let token = stop.clone();
        let (tx, rx) = mpsc::channel::<io::Result<()>>();
        let handle = self.thread(move || match bind() {
            Ok(v) => {
                let _ = tx.send(Ok(()));
                run(v, token);
            }
            Err(e) => {
                let _ = tx.send(Err(e));
            }
        })?;
        match rx.recv_timeout(Duration::from_secs(20)) {
            Ok(Ok(())) => Ok(Service {
                stop,
                handle: Some(handle),
            }),
            Ok(Err(e)) => {
                let _ = handle.join();
                Err(e)
            }
            Err(_) => Err(io::Error::other("server did not start")),
        }
    }
}

/// A running in-namespace server; stopped (and its thread joined) on drop.
pub struct Service {
    stop: CancellationToken,
    handle: Option<JoinHandle<()>>,
}

impl Service {
    /// The token the server's future watches; cancel it to stop the server.
    pub fn token(&self) -> CancellationToken {
        self.stop.clone()
    }
}

impl Drop for Service {
    fn drop(&mut self) {
        self.stop.cancel();
        if let Some(h) = self.handle.take() {
            let _ = h.join();
        }
    }
}

/// Deletes every `gwlab-<pid>-...` namespace whose creating process is gone
/// (a run that was killed before its guard could clean up).
pub fn clean_stale() {
    let Ok(list) = run(Command::new("ip").args(["netns", "list"])) else {
        return;
    };
    for line in list.lines() {
        let Some(name) = line.split_whitespace().next() else {
            continue;
        };
        let Some(rest) = name.strip_prefix(PREFIX) else {
            continue;
        };
        let Some(pid) = rest.split('-').next().and_then(|p| p.parse::<u32>().ok()) else {
            continue;
        };
        if !Path::new(&format!("/proc/{pid}")).exists() {
            delete_ns(name);
        }
    }
    // `/etc/netns/<ns>` directories whose namespace is already gone.
    let Ok(dirs) = std::fs::read_dir("/etc/netns") else {
        return;
    };
    for d in dirs.flatten() {
        let name = d.file_name().to_string_lossy().into_owned();
        let Some(pid) = name
            .strip_prefix(PREFIX)
            .and_then(|r| r.split('-').next())
            .and_then(|p| p.parse::<u32>().ok())
        else {
            continue;
        };
        if !Path::new(&format!("/proc/{pid}")).exists() {
            let _ = std::fs::remove_dir_all(d.path());
        }
    }
}

/// Kills what still runs in the namespace, deletes it and its `/etc/netns`
/// directory. Best effort: errors are ignored (this runs in `Drop`).
fn delete_ns(name: &str) {
    if let Ok(pids) = run(Command::new("ip").args(["netns", "pids", name])) {
        let pids: Vec<&str> = pids.split_whitespace().collect();
        if !pids.is_empty() {
            let _ = Command::new("kill")
                .arg("-9")
                .args(&pids)
                .stderr(Stdio::null())
                .status();
        }
    }
    let _ = Command::new("ip")
        .args(["netns", "delete", name])
        .stderr(Stdio::null())
        .status();
    let _ = std::fs::remove_dir_all(etc_dir(name));
}

fn etc_dir(ns: &str) -> PathBuf {
    Path::new("/etc/netns").join(ns)
}

fn run(cmd: &mut Command) -> io::Result<String> {
    let what = format!("{cmd:?}");
    let out = cmd.stdin(Stdio::null()).output()?;
    check(out, &what)
}

fn check(out: Output, what: &str) -> io::Result<String> {
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    } else {
        Err(io::Error::other(format!(
            "{what}: {}: {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        )))
    }
}

fn find_tool(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(["/usr/sbin", "/sbin"].map(PathBuf::from))
        .map(|d| d.join(name))
        .find(|p| p.is_file())
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}
