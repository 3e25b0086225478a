//! Tests: probes::tcp::connect against real loopback servers.

use std::time::Duration;

use probes::tcp::{connect, TcpOptions};
use probes::{Failure, Trace};

use crate::fakes;

fn opts(ms: u64) -> TcpOptions {
    TcpOptions {
        timeout: Duration::from_millis(ms),
        ttl: None,
    }
}

#[tokio::test]
async fn closed_port_is_connection_refused() {
    let trace = Trace::new();
    let addr = fakes::tcp::closed_port();
    let (rec, stream) = connect(&trace, addr, &opts(2000)).await;
    assert!(stream.is_none());
    assert!(!rec.status.success);
    assert_eq!(rec.status.failure, Some(Failure::ConnectionRefused));
    assert_eq!(rec.ip, "127.0.0.1");
    assert_eq!(rec.port, addr.port());
    let events = trace.take_events();
    assert_eq!(events.len(), 1);
    assert_eq!(events[0].operation, "connect");
    assert_eq!(
        events[0].address.as_deref(),
        Some(addr.to_string().as_str())
    );
    assert_eq!(events[0].failure, Some(Failure::ConnectionRefused));
}

#[tokio::test]
async fn full_backlog_is_generic_timeout() {
    let trace = Trace::new();
    let hole = fakes::tcp::blackhole();
    let (rec, stream) = connect(&trace, hole.addr, &opts(300)).await;
    assert!(stream.is_none());
    assert_eq!(rec.status.failure, Some(Failure::GenericTimeout));
    assert_eq!(
        rec.status.failure.unwrap().to_string(),
        "generic_timeout_error"
    );
}

#[tokio::test]
async fn success_returns_stream_and_stamps_record() {
    let trace = Trace::new().child(7, vec!["tcptest".to_string()]);
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    let o = TcpOptions {
        timeout: Duration::from_secs(2),
        ttl: Some(64),
    };
    let (rec, stream) = connect(&trace, addr, &o).await;
    assert!(stream.is_some());
    assert!(rec.status.success);
    assert_eq!(rec.status.failure, None);
    assert_eq!(rec.transaction_id, 7);
    assert_eq!(rec.tags, vec!["tcptest".to_string()]);
    assert!(rec.t >= rec.t0);
    let json = serde_json::to_value(&rec).unwrap();
    assert_eq!(json["status"]["failure"], serde_json::Value::Null);
    assert_eq!(json["status"]["success"], true);
}
