//! Tests of the namespace API itself: two namespaces, a router between them,
//! a server in one reached from the other, and cleanup.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::time::Duration;

use tokio::io::AsyncWriteExt;

use super::netns::{Lab, PREFIX};

#[test]
fn two_hops_route_and_the_guard_deletes_everything() {
    let Some(lab) = Lab::new_or_skip(&[]) else {
        return;
    };
    let a = lab.add_ns("a").unwrap();
    let r = lab.add_ns("r").unwrap();
    let b = lab.add_ns("b").unwrap();
    lab.link(&a, "up0", "192.0.2.9/29", &r, "down0", "192.0.2.10/29")
        .unwrap();
    lab.link(&r, "up0", "198.51.100.1/29", &b, "down0", "198.51.100.2/29")
        .unwrap();
    r.enable_forwarding().unwrap();
    a.add_route("198.51.100.0/24", "192.0.2.10").unwrap();
    b.add_route("192.0.2.0/24", "198.51.100.1").unwrap();

    // A tokio server in b answers "hello <peer>"; a plain client in a.
    let srv = b
        .serve(
            || TcpListener::bind("198.51.100.2:7000"),
            |l, _stop| async move {
                l.set_nonblocking(true).unwrap();
                let l = tokio::net::TcpListener::from_std(l).unwrap();
                loop {
                    let (mut s, peer) = l.accept().await.unwrap();
                    let _ = s.write_all(format!("hello {}", peer.ip()).as_bytes()).await;
                }
            },
        )
        .unwrap();
    let got = a
        .thread(|| {
            let mut s = TcpStream::connect_timeout(
                &"198.51.100.2:7000".parse().unwrap(),
                Duration::from_secs(5),
            )?;
            let mut buf = String::new();
            s.read_to_string(&mut buf)?;
            std::io::Result::Ok(buf)
        })
        .unwrap()
        .join()
        .unwrap()
        .unwrap();
    assert_eq!(got, "hello 192.0.2.9");
    drop(srv);

    // No route to anything outside the documentation ranges.
    let err = a
        .thread(|| {
            TcpStream::connect_timeout(&"10.1.2.3:80".parse().unwrap(), Duration::from_secs(2))
        })
        .unwrap()
        .join()
        .unwrap()
        .unwrap_err();
    assert_eq!(err.raw_os_error(), Some(libc::ENETUNREACH), "{err}");

    // A process started in a namespace runs there.
    let out = a.exec("ip", &["-4", "-o", "addr", "show", "up0"]).unwrap();
    assert!(out.contains("192.0.2.9/29"), "{out}");

    let names: Vec<String> = [&a, &r, &b].iter().map(|n| n.name().to_string()).collect();
    let _ = std::io::stdout().flush();
    drop(lab);
    let list = a_list();
    for n in names {
        assert!(n.starts_with(PREFIX));
        assert!(!list.contains(&n), "{n} still exists: {list}");
    }
}

#[test]
fn guard_cleans_up_after_a_panic() {
    let Some(lab) = Lab::new_or_skip(&[]) else {
        return;
    };
    let name = lab.add_ns("p").unwrap().name().to_string();
    let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(move || {
        let _lab = lab;
        panic!("a failing lab test");
    }));
    assert!(r.is_err());
    assert!(!a_list().contains(&name));
}

fn a_list() -> String {
    let out = std::process::Command::new("ip")
        .args(["netns", "list"])
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn a_stale_lab_from_a_killed_run_is_removed_at_the_next_start() {
    if super::netns::unavailable(&[]).is_some() {
        println!("lab skipped: needs root and ip (here: needs root)");
        return;
    }
    // No process can have this pid (above the kernel's maximum pid_max).
    let stale = format!("{PREFIX}4194305-0-probe");
    let etc = std::path::Path::new("/etc/netns").join(&stale);
    let status = std::process::Command::new("ip")
        .args(["netns", "add", &stale])
        .status()
        .unwrap();
    assert!(status.success());
    std::fs::create_dir_all(&etc).unwrap();
    std::fs::write(etc.join("resolv.conf"), "nameserver 192.0.2.53\n").unwrap();
    assert!(a_list().contains(&stale));

    let _lab = Lab::new().unwrap();
    assert!(!a_list().contains(&stale), "{}", a_list());
    assert!(!etc.exists());
}
