//! The control-socket client: JSON Lines over a Unix stream socket to `fwd`.
//!
//! - A few connections ([`POOL`]) are kept and reused; requests on one connection are
//!   serialized (fwd answers in order), so a slow request (a large page) does not hold up
//!   a scrape or a health check on another. A connection that failed, timed out or
//!   answered garbage is dropped, and the next request on that slot connects again.
//! - Every request gets a fresh id; lines with another id (a late answer to a request that
//!   timed out) are skipped.
//! - A request that could not be written on a reused connection (fwd restarted) is retried
//!   once on a new connection: fwd never saw it. A request whose answer was lost after it
//!   was written is retried only when it is a read; a write reports [`ClientError::Lost`],
//!   because fwd may or may not have applied it.
//! - Each call has a deadline covering connect, write and read.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use fwd_proto::{
    ControlError, CtFilter, EventLine, EventType, HaTarget, MAX_LINE, PROTOCOL_VERSION,
    RecordBatch, Request, Response, ResponseEnvelope,
};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::UnixStream;
use tokio::net::unix::{OwnedReadHalf, OwnedWriteHalf};

/// Why a control request failed.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// fwd answered with an error.
    #[error("fwd: {0}")]
    Fwd(ControlError),
    /// The socket could not be reached (fwd down).
    #[error("control socket unreachable: {0}")]
    Unreachable(String),
    /// No answer before the deadline (milliseconds).
    #[error("no answer within {0} ms")]
    Timeout(u64),
    /// The connection broke after the request was written.
    #[error("connection lost: {0}")]
    Lost(String),
    /// The answer was not a valid response line.
    #[error("protocol error: {0}")]
    Protocol(String),
    /// The request line would exceed [`MAX_LINE`] bytes (not sent).
    #[error("request of {0} bytes exceeds the control protocol's line limit")]
    TooLarge(usize),
}

struct Conn {
    reader: BufReader<OwnedReadHalf>,
    writer: OwnedWriteHalf,
}

impl Conn {
    async fn open(path: &Path) -> Result<Conn, ClientError> {
        let stream = UnixStream::connect(path)
            .await
            .map_err(|e| ClientError::Unreachable(format!("{}: {e}", path.display())))?;
        let (r, w) = stream.into_split();
        Ok(Conn {
            reader: BufReader::new(r),
            writer: w,
        })
    }

    /// Reads one line of at most [`MAX_LINE`] bytes; `None` at end of stream.
    async fn read_line(&mut self) -> Result<Option<Vec<u8>>, ClientError> {
        let mut buf = Vec::new();
        let n = (&mut self.reader)
            .take(MAX_LINE as u64 + 1)
            .read_until(b'\n', &mut buf)
            .await
            .map_err(|e| ClientError::Lost(e.to_string()))?;
        if n == 0 {
            return Ok(None);
        }
        if buf.last() != Some(&b'\n') {
            if buf.len() > MAX_LINE {
                return Err(ClientError::Protocol("answer line too long".into()));
            }
            return Ok(None);
        }
        buf.pop();
        Ok(Some(buf))
    }

    async fn send(&mut self, id: u64, request: &Line<'_>) -> Result<(), std::io::Error> {
        let line = request.write(id)?;
        if line.len() > MAX_LINE {
            return Err(std::io::Error::new(
                std::io::ErrorKind::InvalidInput,
                TooLargeLine(line.len() - 1),
            ));
        }
        self.writer.write_all(&line).await?;
        self.writer.flush().await
    }

    /// Reads lines until the answer to `id`.
    async fn answer(&mut self, id: u64) -> Result<Response, ClientError> {
        loop {
            let line = self
                .read_line()
                .await?
                .ok_or_else(|| ClientError::Lost("fwd closed the connection".into()))?;
            let env: ResponseEnvelope = serde_json::from_slice(&line)
                .map_err(|e| ClientError::Protocol(format!("bad response line: {e}")))?;
            if env.id != id {
                // A late answer to an earlier request that timed out; skip it.
                continue;
            }
            return env.into_result().map_err(ClientError::Fwd);
        }
    }
}

/// A request as it goes on the wire.
#[derive(Clone, Copy, Debug)]
enum Line<'a> {
    /// Serialized by serde_json.
    Request(&'a Request),
    /// `ha_apply_records` of these wire records (back to back), written by
    /// `dataplane::ha::line` without an intermediate base64 `String`.
    ApplyRecords { records: &'a [u8], target: HaTarget },
}

/// A request envelope that borrows its request (the same JSON as
/// [`fwd_proto::RequestEnvelope`]).
#[derive(serde::Serialize)]
struct EnvelopeRef<'a> {
    v: u32,
    id: u64,
    request: &'a Request,
}

impl Line<'_> {
    /// The request line with id `id`, `\n` included.
    fn write(&self, id: u64) -> Result<Vec<u8>, std::io::Error> {
        match *self {
            Line::Request(request) => {
                let env = EnvelopeRef {
                    v: PROTOCOL_VERSION,
                    id,
                    request,
                };
                let mut line = serde_json::to_vec(&env).map_err(std::io::Error::other)?;
                line.push(b'\n');
                Ok(line)
            }
            Line::ApplyRecords { records, target } => {
                let mut line = Vec::with_capacity(records.len() / 3 * 4 + 96);
                dataplane::ha::line::put_apply_records(&mut line, id, records, target);
                Ok(line)
            }
        }
    }

    /// Whether sending it twice is harmless ([`is_read`]).
    fn is_read(&self) -> bool {
        match self {
            Line::Request(r) => is_read(r),
            Line::ApplyRecords { .. } => false,
        }
    }
}

/// Marker inside the I/O error of a request line over [`MAX_LINE`].
#[derive(Debug, thiserror::Error)]
#[error("request line of {0} bytes")]
struct TooLargeLine(usize);

/// A send error: an oversized line is [`ClientError::TooLarge`] (nothing was written).
fn send_error(e: std::io::Error, otherwise: fn(String) -> ClientError) -> ClientError {
    match e.get_ref().and_then(|i| i.downcast_ref::<TooLargeLine>()) {
        Some(TooLargeLine(n)) => ClientError::TooLarge(*n),
        None => otherwise(e.to_string()),
    }
}

/// Whether a request changes nothing in fwd (safe to send twice).
pub fn is_read(request: &Request) -> bool {
    match request {
        Request::RulesetReplace { dry_run, .. }
        | Request::RulesetCommands { dry_run, .. }
        | Request::SetElementsChange { dry_run, .. } => *dry_run,
        Request::ConntrackDelete { .. } | Request::TuningSet { .. } => false,
        _ => true,
    }
}

/// Connections a [`ControlClient`] keeps at most.
pub const POOL: usize = 4;

/// A client of one control socket, shared by all handlers.
#[derive(Debug)]
pub struct ControlClient {
    path: PathBuf,
    timeout: Duration,
    next_id: AtomicU64,
    slots: Vec<tokio::sync::Mutex<Option<ConnSlot>>>,
}

struct ConnSlot(Conn);

impl std::fmt::Debug for ConnSlot {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ConnSlot")
    }
}

impl ControlClient {
    /// A client for the socket at `path`; `timeout` bounds each call. Connects lazily.
    pub fn new(path: impl Into<PathBuf>, timeout: Duration) -> Self {
        ControlClient {
            path: path.into(),
            timeout,
            next_id: AtomicU64::new(1),
            slots: (0..POOL).map(|_| tokio::sync::Mutex::new(None)).collect(),
        }
    }

    /// The socket path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The default deadline of a call.
    pub fn timeout(&self) -> Duration {
        self.timeout
    }

    /// Sends `request` and waits for its answer, within the default deadline.
    pub async fn call(&self, request: Request) -> Result<Response, ClientError> {
        self.call_within(request, self.timeout).await
    }

    /// Sends `request` and waits for its answer, within `timeout`.
    pub async fn call_within(
        &self,
        request: Request,
        timeout: Duration,
    ) -> Result<Response, ClientError> {
        self.call_line(Line::Request(&request), timeout).await
    }

    /// `ha_apply_records` of `records` (sync wire records back to back, as a DATA
    /// datagram's body holds them), within the default deadline. The line is written
    /// straight from the bytes (`dataplane::ha::line`): the same request as
    /// `call(Request::HaApplyRecords { records: base64, target })` without building it.
    pub async fn call_apply_records(
        &self,
        records: &[u8],
        target: HaTarget,
    ) -> Result<Response, ClientError> {
        self.call_line(Line::ApplyRecords { records, target }, self.timeout)
            .await
    }

    async fn call_line(&self, line: Line<'_>, timeout: Duration) -> Result<Response, ClientError> {
        let ms = u64::try_from(timeout.as_millis()).unwrap_or(u64::MAX);
        tokio::time::timeout(timeout, self.call_inner(&line))
            .await
            .unwrap_or(Err(ClientError::Timeout(ms)))
    }

    async fn call_inner(&self, request: &Line<'_>) -> Result<Response, ClientError> {
        // The first idle slot (so a lone client reuses one connection), else wait for one.
        let mut slot = match self.slots.iter().find_map(|s| s.try_lock().ok()) {
            Some(s) => s,
            None => {
                let i = usize::try_from(self.next_id.load(Ordering::Relaxed) % POOL as u64)
                    .unwrap_or(0);
                self.slots[i].lock().await
            }
        };
        // Taken out while in use: if this future is dropped (deadline), the connection,
        // which may still carry our answer, goes with it.
        let (mut conn, reused) = match slot.take() {
            Some(ConnSlot(c)) => (c, true),
            None => (Conn::open(&self.path).await?, false),
        };
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let mut result = match conn.send(id, request).await {
            Ok(()) => conn.answer(id).await,
            Err(e) if reused => Err(send_error(e, |m| {
                ClientError::Unreachable(format!("stale connection: {m}"))
            })),
            Err(e) => Err(send_error(e, ClientError::Lost)),
        };
        let retry = reused
            && match &result {
                Err(ClientError::Unreachable(_)) => true,
                Err(ClientError::Lost(_)) => request.is_read(),
                _ => false,
            };
        if retry {
            conn = Conn::open(&self.path).await?;
            let id = self.next_id.fetch_add(1, Ordering::Relaxed);
            result = match conn.send(id, request).await {
                Ok(()) => conn.answer(id).await,
                Err(e) => Err(send_error(e, ClientError::Lost)),
            };
        }
        match &result {
            Ok(_) | Err(ClientError::Fwd(_) | ClientError::TooLarge(_)) => {
                *slot = Some(ConnSlot(conn));
            }
            Err(_) => {}
        }
        result
    }

    /// Opens a dedicated connection and subscribes to conntrack events.
    pub async fn subscribe(
        &self,
        filter: CtFilter,
        events: Vec<EventType>,
    ) -> Result<EventStream, ClientError> {
        let conn = self
            .open_stream(&Request::Subscribe { filter, events })
            .await?;
        Ok(EventStream { conn })
    }

    /// Opens a dedicated connection for the sync daemon's binary event stream
    /// (`subscribe_records`: batches of sync wire records).
    pub async fn subscribe_records(&self) -> Result<RecordStream, ClientError> {
        let conn = self.open_stream(&Request::SubscribeRecords).await?;
        Ok(RecordStream { conn })
    }

    /// A new connection that sent `request` and was answered `subscribed`.
    async fn open_stream(&self, request: &Request) -> Result<Conn, ClientError> {
        let ms = u64::try_from(self.timeout.as_millis()).unwrap_or(u64::MAX);
        let fut = async {
            let mut conn = Conn::open(&self.path).await?;
            let id = self.next_id.fetch_add(1, Ordering::Relaxed);
            conn.send(id, &Line::Request(request))
                .await
                .map_err(|e| send_error(e, ClientError::Lost))?;
            match conn.answer(id).await? {
                Response::Subscribed => Ok(conn),
                other => Err(ClientError::Protocol(format!(
                    "expected `subscribed`, got {other:?}"
                ))),
            }
        };
        tokio::time::timeout(self.timeout, fut)
            .await
            .unwrap_or(Err(ClientError::Timeout(ms)))
    }
}

/// A `subscribe_records` stream: one [`RecordBatch`] per line until fwd closes it.
pub struct RecordStream {
    conn: Conn,
}

impl std::fmt::Debug for RecordStream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("RecordStream")
    }
}

impl RecordStream {
    /// The next batch; `Ok(None)` when fwd closed the stream.
    pub async fn next_batch(&mut self) -> Result<Option<RecordBatch>, ClientError> {
        let Some(line) = self.conn.read_line().await? else {
            return Ok(None);
        };
        serde_json::from_slice(&line)
            .map(Some)
            .map_err(|e| ClientError::Protocol(format!("bad record batch line: {e}")))
    }
}

/// An active subscription: one [`EventLine`] per line until fwd closes it.
pub struct EventStream {
    conn: Conn,
}

impl std::fmt::Debug for EventStream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("EventStream")
    }
}

impl EventStream {
    /// The next event; `Ok(None)` when fwd closed the stream.
    pub async fn next_event(&mut self) -> Result<Option<EventLine>, ClientError> {
        let Some(line) = self.conn.read_line().await? else {
            return Ok(None);
        };
        serde_json::from_slice(&line)
            .map(Some)
            .map_err(|e| ClientError::Protocol(format!("bad event line: {e}")))
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::sync::atomic::AtomicUsize;

    use fwd_proto::{ControlError, ErrorCode, RequestEnvelope};
    use tokio::io::AsyncWriteExt;
    use tokio::net::UnixListener;

    use super::*;

    /// What the scripted server does with a request.
    #[derive(Clone, Copy, Debug, PartialEq)]
    enum Act {
        Answer,
        /// A line with another id first (a late answer), then the answer.
        StaleFirst,
        /// Close the connection without answering.
        Close,
        Error,
    }

    struct Server {
        path: PathBuf,
        accepts: Arc<AtomicUsize>,
        requests: Arc<std::sync::Mutex<Vec<Request>>>,
        _dir: tempfile::TempDir,
    }

    /// A server that answers `count` for reads; `script(n)` decides for the n-th request.
    async fn server(script: fn(usize) -> Act) -> Server {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.sock");
        let listener = UnixListener::bind(&path).unwrap();
        let accepts = Arc::new(AtomicUsize::new(0));
        let requests = Arc::new(std::sync::Mutex::new(Vec::new()));
        let (a, r) = (accepts.clone(), requests.clone());
        tokio::spawn(async move {
            while let Ok((s, _)) = listener.accept().await {
                a.fetch_add(1, Ordering::SeqCst);
                let r = r.clone();
                tokio::spawn(async move {
                    let (rd, mut wr) = s.into_split();
                    let mut lines = BufReader::new(rd).lines();
                    while let Ok(Some(l)) = lines.next_line().await {
                        let env: RequestEnvelope = serde_json::from_str(&l).unwrap();
                        let n = {
                            let mut g = r.lock().unwrap();
                            g.push(env.request.clone());
                            g.len()
                        };
                        let ok = ResponseEnvelope::ok(env.id, Response::Count { count: n as u64 });
                        let mut out = String::new();
                        match script(n) {
                            Act::Close => return,
                            Act::StaleFirst => {
                                let stale = ResponseEnvelope::ok(
                                    env.id - 1,
                                    Response::Deleted { deleted: 9 },
                                );
                                out += &serde_json::to_string(&stale).unwrap();
                                out.push('\n');
                                out += &serde_json::to_string(&ok).unwrap();
                            }
                            Act::Answer => out += &serde_json::to_string(&ok).unwrap(),
                            Act::Error => {
                                let e = ResponseEnvelope::err(
                                    env.id,
                                    ControlError::new(ErrorCode::BadTunable, "no").field("x"),
                                );
                                out += &serde_json::to_string(&e).unwrap();
                            }
                        }
                        out.push('\n');
                        wr.write_all(out.as_bytes()).await.unwrap();
                    }
                });
            }
        });
        Server {
            path,
            accepts,
            requests,
            _dir: dir,
        }
    }

    fn count(r: Result<Response, ClientError>) -> u64 {
        match r {
            Ok(Response::Count { count }) => count,
            other => panic!("unexpected {other:?}"),
        }
    }

    #[tokio::test]
    async fn one_connection_is_reused_and_stale_answers_are_skipped() {
        let s = server(|n| if n == 2 { Act::StaleFirst } else { Act::Answer }).await;
        let c = ControlClient::new(&s.path, Duration::from_secs(5));
        assert_eq!(count(c.call(Request::Status).await), 1);
        assert_eq!(count(c.call(Request::Status).await), 2);
        assert_eq!(count(c.call(Request::Status).await), 3);
        assert_eq!(s.accepts.load(Ordering::SeqCst), 1);
    }

    #[tokio::test]
    async fn fwd_errors_keep_the_connection() {
        let s = server(|n| if n == 1 { Act::Error } else { Act::Answer }).await;
        let c = ControlClient::new(&s.path, Duration::from_secs(5));
        match c.call(Request::TuningGet).await {
            Err(ClientError::Fwd(e)) => assert_eq!(
                (e.code, e.field.as_deref()),
                (ErrorCode::BadTunable, Some("x"))
            ),
            other => panic!("unexpected {other:?}"),
        }
        assert_eq!(count(c.call(Request::Status).await), 2);
        assert_eq!(s.accepts.load(Ordering::SeqCst), 1);
    }

    #[tokio::test]
    async fn a_lost_read_is_retried_on_a_new_connection() {
        let s = server(|n| if n == 2 { Act::Close } else { Act::Answer }).await;
        let c = ControlClient::new(&s.path, Duration::from_secs(5));
        assert_eq!(count(c.call(Request::Status).await), 1);
        assert_eq!(count(c.call(Request::Status).await), 3);
        assert_eq!(s.accepts.load(Ordering::SeqCst), 2);
    }

    #[tokio::test]
    async fn a_lost_write_is_reported_not_retried() {
        let s = server(|n| if n == 2 { Act::Close } else { Act::Answer }).await;
        let c = ControlClient::new(&s.path, Duration::from_secs(5));
        assert_eq!(count(c.call(Request::Status).await), 1);
        let r = c
            .call(Request::TuningSet {
                values: [("nf_conntrack_max".to_string(), 10)].into(),
            })
            .await;
        assert!(matches!(r, Err(ClientError::Lost(_))), "{r:?}");
        let sets = s
            .requests
            .lock()
            .unwrap()
            .iter()
            .filter(|r| matches!(r, Request::TuningSet { .. }))
            .count();
        assert_eq!(sets, 1, "a write is sent once");
        // The next request reconnects.
        assert_eq!(count(c.call(Request::Status).await), 3);
    }

    /// The raw-line `ha_apply_records` is the request `call` would send (the records as
    /// base64, the target), and as a write it is not sent again when its answer is lost.
    #[tokio::test]
    async fn apply_records_goes_out_as_its_request_and_is_not_retried() {
        let s = server(|n| if n == 3 { Act::Close } else { Act::Answer }).await;
        let c = ControlClient::new(&s.path, Duration::from_secs(5));
        let records: Vec<u8> = (0..=255).collect();
        let r = c.call_apply_records(&records, HaTarget::Workers).await;
        assert_eq!(count(r), 1);
        assert_eq!(count(c.call_apply_records(&[], HaTarget::Cache).await), 2);
        let lost = c.call_apply_records(&records, HaTarget::Cache).await;
        assert!(matches!(lost, Err(ClientError::Lost(_))), "{lost:?}");
        let want = |records: &[u8], target| Request::HaApplyRecords {
            records: dataplane::ha::wire::base64_encode(records),
            target,
        };
        assert_eq!(
            *s.requests.lock().unwrap(),
            [
                want(&records, HaTarget::Workers),
                want(&[], HaTarget::Cache),
                want(&records, HaTarget::Cache),
            ]
        );
    }

    #[tokio::test]
    async fn missing_socket_is_unreachable_and_silence_is_a_timeout() {
        let c = ControlClient::new("/nonexistent/fwd.sock", Duration::from_secs(1));
        assert!(matches!(
            c.call(Request::Status).await,
            Err(ClientError::Unreachable(_))
        ));

        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("mute.sock");
        let listener = UnixListener::bind(&path).unwrap();
        let hold = tokio::spawn(async move {
            let (s, _) = listener.accept().await.unwrap();
            // Keep the connection open without answering.
            tokio::time::sleep(Duration::from_secs(30)).await;
            drop(s);
        });
        let c = ControlClient::new(&path, Duration::from_millis(100));
        assert!(matches!(
            c.call(Request::Status).await,
            Err(ClientError::Timeout(100))
        ));
        hold.abort();
    }

    #[tokio::test]
    async fn a_stalled_request_does_not_block_the_next() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("slow.sock");
        let listener = UnixListener::bind(&path).unwrap();
        // The first connection never answers; later ones answer.
        tokio::spawn(async move {
            let mut first = true;
            let mut held = Vec::new();
            while let Ok((s, _)) = listener.accept().await {
                if first {
                    first = false;
                    held.push(s);
                    continue;
                }
                tokio::spawn(async move {
                    let (rd, mut wr) = s.into_split();
                    let mut lines = BufReader::new(rd).lines();
                    while let Ok(Some(l)) = lines.next_line().await {
                        let env: RequestEnvelope = serde_json::from_str(&l).unwrap();
                        let ok = ResponseEnvelope::ok(env.id, Response::Count { count: 7 });
                        let line = format!("{}\n", serde_json::to_string(&ok).unwrap());
                        wr.write_all(line.as_bytes()).await.unwrap();
                    }
                });
            }
        });
        let c = Arc::new(ControlClient::new(&path, Duration::from_secs(2)));
        let c2 = c.clone();
        let slow = tokio::spawn(async move { c2.call(Request::Status).await });
        // Let the slow call take its slot and send.
        while !slow.is_finished() && c.slots[0].try_lock().is_ok() {
            tokio::task::yield_now().await;
        }
        assert_eq!(count(c.call(Request::Status).await), 7);
        assert!(
            !slow.is_finished(),
            "answered on another connection while the slow one waits"
        );
        assert!(matches!(slow.await.unwrap(), Err(ClientError::Timeout(_))));
    }

    #[test]
    fn reads_and_writes() {
        assert!(is_read(&Request::Stats));
        assert!(is_read(&Request::RulesetReplace {
            ruleset: fwd_proto::RulesetSource::Text(String::new()),
            dry_run: true
        }));
        assert!(!is_read(&Request::RulesetReplace {
            ruleset: fwd_proto::RulesetSource::Text(String::new()),
            dry_run: false
        }));
        assert!(!is_read(&Request::ConntrackDelete {
            filter: CtFilter::default(),
            all: true
        }));
    }
}
