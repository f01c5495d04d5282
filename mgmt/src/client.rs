//! The control-socket client: JSON Lines over a Unix stream socket to `fwd`.
//!
//! - One connection is kept and reused; requests on it are serialized (fwd answers in
//!   order). A connection that failed, timed out or answered garbage is dropped, and the
//!   next request connects again.
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

use dataplane::control::proto::{
    ControlError, CtFilter, EventLine, EventType, MAX_LINE, PROTOCOL_VERSION, Request,
    RequestEnvelope, Response, ResponseEnvelope,
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

    async fn send(&mut self, id: u64, request: &Request) -> Result<(), std::io::Error> {
        let env = RequestEnvelope {
            v: PROTOCOL_VERSION,
            id,
            request: request.clone(),
        };
        let mut line = serde_json::to_vec(&env).map_err(std::io::Error::other)?;
        line.push(b'\n');
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

/// Whether a request changes nothing in fwd (safe to send twice).
pub fn is_read(request: &Request) -> bool {
    match request {
        Request::RulesetReplace { dry_run, .. } => *dry_run,
        Request::ConntrackDelete { .. } | Request::TuningSet { .. } => false,
        _ => true,
    }
}

/// A client of one control socket, shared by all handlers.
#[derive(Debug)]
pub struct ControlClient {
    path: PathBuf,
    timeout: Duration,
    next_id: AtomicU64,
    conn: tokio::sync::Mutex<Option<ConnSlot>>,
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
            conn: tokio::sync::Mutex::new(None),
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
        let ms = u64::try_from(timeout.as_millis()).unwrap_or(u64::MAX);
        tokio::time::timeout(timeout, self.call_inner(&request))
            .await
            .unwrap_or(Err(ClientError::Timeout(ms)))
    }

    async fn call_inner(&self, request: &Request) -> Result<Response, ClientError> {
        let mut slot = self.conn.lock().await;
        // Taken out while in use: if this future is dropped (deadline), the connection,
        // which may still carry our answer, goes with it.
        let (mut conn, reused) = match slot.take() {
            Some(ConnSlot(c)) => (c, true),
            None => (Conn::open(&self.path).await?, false),
        };
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let mut result = match conn.send(id, request).await {
            Ok(()) => conn.answer(id).await,
            Err(e) if reused => Err(ClientError::Unreachable(format!("stale connection: {e}"))),
            Err(e) => Err(ClientError::Lost(e.to_string())),
        };
        let retry = reused
            && match &result {
                Err(ClientError::Unreachable(_)) => true,
                Err(ClientError::Lost(_)) => is_read(request),
                _ => false,
            };
        if retry {
            conn = Conn::open(&self.path).await?;
            let id = self.next_id.fetch_add(1, Ordering::Relaxed);
            result = match conn.send(id, request).await {
                Ok(()) => conn.answer(id).await,
                Err(e) => Err(ClientError::Lost(e.to_string())),
            };
        }
        match &result {
            Ok(_) | Err(ClientError::Fwd(_)) => *slot = Some(ConnSlot(conn)),
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
        let ms = u64::try_from(self.timeout.as_millis()).unwrap_or(u64::MAX);
        let fut = async {
            let mut conn = Conn::open(&self.path).await?;
            let id = self.next_id.fetch_add(1, Ordering::Relaxed);
            conn.send(id, &Request::Subscribe { filter, events })
                .await
                .map_err(|e| ClientError::Lost(e.to_string()))?;
            match conn.answer(id).await? {
                Response::Subscribed => Ok(EventStream { conn }),
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
