//! The collector's HTTP routes.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, Path, Query, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::{json, Value};

use super::store::{MeasurementFilter, ReportMeta, Store, MAX_LIMIT};
use super::validate::{valid_asn, valid_cc, valid_test_name, validate_measurement};

/// Default cap on a request body: 4 MiB (a measurement with a 512 KiB body
/// snapshot at every redirect hop stays well below it).
pub const DEFAULT_MAX_BODY: usize = 4 * 1024 * 1024;

/// Shared state of the routes.
#[derive(Clone, Debug)]
pub struct CollectorState {
    store: Arc<Store>,
    max_body: usize,
}

impl CollectorState {
    /// Wraps a store.
    pub fn new(store: Store, max_body: usize) -> CollectorState {
        CollectorState {
            store: Arc::new(store),
            max_body,
        }
    }

    /// The store.
    pub fn store(&self) -> &Arc<Store> {
        &self.store
    }
}

/// The collector's routes.
pub fn router(state: CollectorState) -> Router {
    let limit = state.max_body;
    Router::new()
        .route("/", get(health))
        .route("/report", post(open_report))
        .route("/report/{id}", post(submit))
        .route("/report/{id}/close", post(close_report))
        .route("/api/v1/measurements", get(list))
        .route("/api/v1/measurements.jsonl", get(list_jsonl))
        .route("/api/v1/measurements/{uid}", get(fetch))
        .layer(DefaultBodyLimit::max(limit))
        .with_state(state)
}

fn reject(code: StatusCode, reason: impl std::fmt::Display) -> Response {
    (code, Json(json!({ "error": reason.to_string() }))).into_response()
}

/// A refusal with its status and one-line reason.
#[derive(Debug)]
struct Reject(StatusCode, String);

impl IntoResponse for Reject {
    fn into_response(self) -> Response {
        reject(self.0, self.1)
    }
}

fn parse_json(body: &Bytes) -> Result<Value, Reject> {
    serde_json::from_slice(body)
        .map_err(|e| Reject(StatusCode::BAD_REQUEST, format!("malformed JSON: {e}")))
}

async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, super::StoreError> + Send + 'static,
) -> Result<T, Reject> {
    match tokio::task::spawn_blocking(f).await {
        Ok(Ok(v)) => Ok(v),
        Ok(Err(e)) => Err(Reject(
            StatusCode::SERVICE_UNAVAILABLE,
            format!("storage: {e}"),
        )),
        Err(e) => Err(Reject(StatusCode::INTERNAL_SERVER_ERROR, e.to_string())),
    }
}

async fn health() -> Json<Value> {
    Json(json!({ "message": "gatewatch collector" }))
}

async fn open_report(State(st): State<CollectorState>, body: Bytes) -> Response {
    let v = match parse_json(&body) {
        Ok(v) => v,
        Err(r) => return r.into_response(),
    };
    let s = |k: &str| {
        v.get(k)
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string()
    };
    let meta = ReportMeta {
        probe_asn: s("probe_asn"),
        probe_cc: s("probe_cc"),
        software_name: s("software_name"),
        software_version: s("software_version"),
        test_name: s("test_name"),
        test_version: s("test_version"),
        test_start_time: s("test_start_time"),
    };
    if !valid_cc(&meta.probe_cc) {
        return reject(
            StatusCode::BAD_REQUEST,
            "probe_cc must be two upper-case letters",
        );
    }
    if !valid_asn(&meta.probe_asn) {
        return reject(StatusCode::BAD_REQUEST, "probe_asn must be AS<number>");
    }
    if !valid_test_name(&meta.test_name) {
        return reject(
            StatusCode::BAD_REQUEST,
            "test_name must be 1-30 of [a-z0-9_]",
        );
    }
    if v.get("format").and_then(Value::as_str).unwrap_or("json") != "json" {
        return reject(StatusCode::BAD_REQUEST, "only format \"json\" is supported");
    }
    let store = Arc::clone(&st.store);
    match blocking(move || store.open_report(&meta)).await {
        Ok(id) => Json(json!({
            "backend_version": env!("CARGO_PKG_VERSION"),
            "report_id": id,
            "supported_formats": ["json"],
        }))
        .into_response(),
        Err(r) => r.into_response(),
    }
}

async fn submit(State(st): State<CollectorState>, Path(id): Path<String>, body: Bytes) -> Response {
    let v = match parse_json(&body) {
        Ok(v) => v,
        Err(r) => return r.into_response(),
    };
    if v.get("format").and_then(Value::as_str).unwrap_or("json") != "json" {
        return reject(StatusCode::BAD_REQUEST, "only format \"json\" is supported");
    }
    let content = match v.get("content") {
        Some(Value::String(s)) => match serde_json::from_str::<Value>(s) {
            Ok(c) => c,
            Err(e) => return reject(StatusCode::BAD_REQUEST, format!("content: {e}")),
        },
        Some(c) => c.clone(),
        None => return reject(StatusCode::BAD_REQUEST, "missing key `content`"),
    };
    if let Err(e) = validate_measurement(&content) {
        return reject(StatusCode::BAD_REQUEST, e);
    }
    if !st.store.report_known(&id) {
        let store = Arc::clone(&st.store);
        let rid = id.clone();
        match blocking(move || store.report_exists(&rid)).await {
            Ok(true) => {}
            Ok(false) => return reject(StatusCode::NOT_FOUND, format!("no report {id:?}")),
            Err(r) => return r.into_response(),
        }
    }
    // Answered once the writer's transaction holding it is committed.
    match st.store.insert_async(&id, &content).await {
        Ok(uid) => Json(json!({ "measurement_uid": uid })).into_response(),
        Err(e) => reject(StatusCode::SERVICE_UNAVAILABLE, format!("storage: {e}")),
    }
}

async fn close_report(State(st): State<CollectorState>, Path(id): Path<String>) -> Response {
    let store = Arc::clone(&st.store);
    let rid = id.clone();
    match blocking(move || store.report_exists(&rid)).await {
        Ok(true) => Json(json!({})).into_response(),
        Ok(false) => reject(StatusCode::NOT_FOUND, format!("no report {id:?}")),
        Err(r) => r.into_response(),
    }
}

/// Query parameters of the listing endpoints.
#[derive(Debug, Default, Deserialize)]
struct ListQuery {
    since: Option<String>,
    until: Option<String>,
    probe_asn: Option<String>,
    input: Option<String>,
    limit: Option<usize>,
    /// Continue after this `measurement_uid` (the `.jsonl` listing).
    after: Option<String>,
}

impl From<ListQuery> for MeasurementFilter {
    fn from(q: ListQuery) -> Self {
        MeasurementFilter {
            since: q.since,
            until: q.until,
            probe_asn: q.probe_asn,
            input: q.input,
            limit: q.limit.unwrap_or(0).min(MAX_LIMIT),
        }
    }
}

async fn list(State(st): State<CollectorState>, Query(q): Query<ListQuery>) -> Response {
    let store = Arc::clone(&st.store);
    let f = MeasurementFilter::from(q);
    match blocking(move || store.list(&f)).await {
        Ok(rows) => Json(json!({ "results": rows })).into_response(),
        Err(r) => r.into_response(),
    }
}

/// The header naming the `measurement_uid` to pass as `after=` for the
/// next page of a `.jsonl` listing; absent on the last page.
pub const NEXT_AFTER_HEADER: &str = "x-next-after";

/// Streams the measurements, one JSON line each, read from the database a
/// few rows at a time (memory stays bounded whatever their number and
/// size). A page holds at most `limit` lines ([`super::DEFAULT_LIMIT`] when not
/// given, at most [`MAX_LIMIT`]); when more follow, the `X-Next-After`
/// header names the `after=` for the next page.
async fn list_jsonl(State(st): State<CollectorState>, Query(q): Query<ListQuery>) -> Response {
    let after = q.after.clone();
    let f = MeasurementFilter::from(q);
    let store = Arc::clone(&st.store);
    let found = blocking(move || {
        let cursor = match &after {
            Some(uid) => match store.cursor_of(uid)? {
                Some(c) => Some(c),
                None => return Ok(Err(uid.clone())),
            },
            None => None,
        };
        let next = store.next_page(&f, cursor.as_ref())?;
        Ok(Ok((f, cursor, next)))
    })
    .await;
    let (f, cursor, next) = match found {
        Ok(Ok(x)) => x,
        Ok(Err(uid)) => {
            return reject(
                StatusCode::BAD_REQUEST,
                format!("after: no measurement {uid:?}"),
            )
        }
        Err(r) => return r.into_response(),
    };
    // A few lines in flight between the database thread and the client.
    let (tx, rx) = tokio::sync::mpsc::channel::<Result<Bytes, std::io::Error>>(4);
    let store = Arc::clone(&st.store);
    tokio::task::spawn_blocking(move || {
        let sent = store.for_each_body(&f, cursor.as_ref(), |mut body| {
            body.push('\n');
            tx.blocking_send(Ok(Bytes::from(body))).is_ok()
        });
        if let Err(e) = sent {
            // The client sees a cut-off answer, not a short but clean one.
            let _ = tx.blocking_send(Err(std::io::Error::other(e.to_string())));
        }
    });
    let mut resp = axum::body::Body::new(LineStream(rx)).into_response();
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static("application/x-ndjson"),
    );
    if let Some(uid) = next.and_then(|c| header::HeaderValue::from_str(&c.uid).ok()) {
        resp.headers_mut().insert(NEXT_AFTER_HEADER, uid);
    }
    resp
}

/// A response body fed, line by line, through a channel.
struct LineStream(tokio::sync::mpsc::Receiver<Result<Bytes, std::io::Error>>);

impl hyper::body::Body for LineStream {
    type Data = Bytes;
    type Error = std::io::Error;

    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<hyper::body::Frame<Bytes>, std::io::Error>>> {
        self.0
            .poll_recv(cx)
            .map(|line| line.map(|r| r.map(hyper::body::Frame::data)))
    }
}

async fn fetch(State(st): State<CollectorState>, Path(uid): Path<String>) -> Response {
    let store = Arc::clone(&st.store);
    let u = uid.clone();
    match blocking(move || store.get(&u)).await {
        Ok(Some(body)) => ([(header::CONTENT_TYPE, "application/json")], body).into_response(),
        Ok(None) => reject(StatusCode::NOT_FOUND, format!("no measurement {uid:?}")),
        Err(r) => r.into_response(),
    }
}
