//! The socket loop: accepting connections (capped), reading request lines, writing
//! answers and event streams, and binding the socket without a window.

#![allow(
    clippy::disallowed_types,
    reason = "control thread, not the data path: uptime and worker timeouts use Instant/SystemTime"
)]

use std::io::{ErrorKind, Read, Write};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use super::fanout::TakenEvents;
use super::{Backend, CompiledFilter, MAX_CONNECTIONS, MAX_SUBSCRIBERS, Server};
use crate::control::proto::{
    ControlError, ErrorCode, EventLine, EventType, MAX_LINE, PROTOCOL_VERSION, Request,
    RequestEnvelope, Response, ResponseEnvelope,
};

/// A subscription: which events, which connections.
#[derive(Debug, Clone, Default)]
pub(super) struct Subscription {
    filter: CompiledFilter,
    events: Vec<EventType>,
    lost: u64,
    /// `subscribe_records`: sync wire records in
    /// [`RecordBatch`](crate::control::proto::RecordBatch) lines.
    records: bool,
}

impl<B: Backend> Server<B> {
    /// Answers one request line (the connection stays open whatever the answer). The
    /// second value is set when the connection turns into an event stream.
    pub(super) fn handle_line(
        &mut self,
        line: &str,
        may_subscribe: bool,
    ) -> (ResponseEnvelope, Option<Subscription>) {
        let env: RequestEnvelope = match serde_json::from_str(line) {
            Ok(e) => e,
            Err(e) => {
                // Echo the id when the line at least has one.
                let id = serde_json::from_str::<serde_json::Value>(line)
                    .ok()
                    .and_then(|v| v.get("id").and_then(serde_json::Value::as_u64))
                    .unwrap_or(0);
                return (
                    ResponseEnvelope::err(
                        id,
                        ControlError::new(ErrorCode::BadRequest, e.to_string()),
                    ),
                    None,
                );
            }
        };
        if env.v != PROTOCOL_VERSION {
            return (
                ResponseEnvelope::err(
                    env.id,
                    ControlError::new(
                        ErrorCode::UnsupportedVersion,
                        format!(
                            "protocol {} is not spoken here (this is {PROTOCOL_VERSION})",
                            env.v
                        ),
                    ),
                ),
                None,
            );
        }
        let mut sub = None;
        let result = match env.request {
            Request::Subscribe { .. } | Request::SubscribeRecords if !may_subscribe => {
                Err(ControlError::new(
                    ErrorCode::Busy,
                    format!("{MAX_SUBSCRIBERS} event subscriptions are open already"),
                ))
            }
            Request::Subscribe { filter, events } => match CompiledFilter::new(&filter) {
                Ok(filter) => {
                    sub = Some(Subscription {
                        filter,
                        events,
                        lost: 0,
                        records: false,
                    });
                    Ok(Response::Subscribed)
                }
                Err(e) => Err(e),
            },
            Request::SubscribeRecords => {
                // A new sync subscriber (the daemon restarted): every live expectation
                // goes out again with the next poll.
                self.ha.expect_stamp = None;
                self.ha.expect_sent.clear();
                sub = Some(Subscription {
                    records: true,
                    ..Subscription::default()
                });
                Ok(Response::Subscribed)
            }
            req => self.request(req),
        };
        let resp = match result {
            Ok(r) => ResponseEnvelope::ok(env.id, r),
            Err(e) => ResponseEnvelope::err(env.id, e),
        };
        (resp, sub)
    }

    /// Serves `listener` until `stop` is set, calling `between` every poll (the daemon
    /// checks its signal flags there).
    pub fn serve(
        &mut self,
        listener: &UnixListener,
        stop: &AtomicBool,
        between: &mut dyn FnMut(&mut Self),
    ) {
        if let Err(e) = listener.set_nonblocking(true) {
            eprintln!("fwd: control socket: {e}");
            return;
        }
        let mut conns: Vec<Conn> = Vec::new();
        while !stop.load(Ordering::Relaxed) {
            let mut busy = false;
            loop {
                match listener.accept() {
                    Ok((s, _)) => {
                        // Over the cap the connection is closed at once (dropped).
                        if conns.len() < MAX_CONNECTIONS && s.set_nonblocking(true).is_ok() {
                            conns.push(Conn::new(s));
                            busy = true;
                        }
                    }
                    Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                    Err(e) => {
                        eprintln!("fwd: control socket accept: {e}");
                        break;
                    }
                }
            }
            for i in 0..conns.len() {
                let subscribers = conns.iter().filter(|c| c.sub.is_some()).count();
                busy |= conns[i].poll(self, subscribers < MAX_SUBSCRIBERS);
            }
            let listening = |records: bool| {
                conns
                    .iter()
                    .any(|c| !c.closed && c.sub.as_ref().is_some_and(|s| s.records == records))
            };
            let (json, binary) = (listening(false), listening(true));
            if binary {
                let t = self.take_raw_events(json);
                for c in &mut conns {
                    c.push_events(&t.lines, t.lost);
                    c.push_records(&t);
                }
                busy |= t.count + t.synced_skipped > 0;
            } else if json {
                let (events, lost) = self.take_events();
                for c in &mut conns {
                    c.push_events(&events, lost);
                }
                busy |= !events.is_empty();
            }
            conns.retain(|c| !c.closed);
            self.housekeeping();
            between(self);
            if !busy {
                std::thread::sleep(Duration::from_millis(2));
            }
        }
    }
}

/// One client connection.
struct Conn {
    stream: UnixStream,
    rbuf: Vec<u8>,
    wbuf: Vec<u8>,
    sub: Option<Subscription>,
    closed: bool,
}

/// Most bytes a subscriber may have pending before events are counted as lost (a slow
/// reader costs at most this much memory).
const MAX_PENDING: usize = 256 << 10;
/// The same for a `subscribe_records` stream (the sync daemon, at most one or two): a
/// lost batch costs the peer a whole-table resync, so it may fall this far behind (about
/// 200 000 IPv4 records in base64) while it is descheduled.
const MAX_PENDING_RECORDS: usize = 16 << 20;

impl Conn {
    pub(super) fn new(stream: UnixStream) -> Self {
        Conn {
            stream,
            rbuf: Vec::new(),
            wbuf: Vec::new(),
            sub: None,
            closed: false,
        }
    }

    /// Reads what is there, answers complete lines, writes what it can. True if anything
    /// happened.
    pub(super) fn poll<B: Backend>(&mut self, server: &mut Server<B>, may_subscribe: bool) -> bool {
        let mut busy = false;
        let mut buf = [0u8; 16 * 1024];
        loop {
            match self.stream.read(&mut buf) {
                Ok(0) => {
                    self.closed = true;
                    break;
                }
                Ok(n) => {
                    busy = true;
                    self.rbuf.extend_from_slice(&buf[..n]);
                    if self.rbuf.len() > MAX_LINE && !self.rbuf.contains(&b'\n') {
                        self.closed = true;
                        return true;
                    }
                }
                Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(_) => {
                    self.closed = true;
                    break;
                }
            }
        }
        while let Some(pos) = self.rbuf.iter().position(|&b| b == b'\n') {
            let line: Vec<u8> = self.rbuf.drain(..=pos).collect();
            let text = line_text(&line[..pos]);
            let text = text.trim();
            if text.is_empty() || self.sub.is_some() {
                continue;
            }
            let (resp, sub) = server.handle_line(text, may_subscribe);
            if sub.is_some() {
                self.sub = sub;
            }
            self.queue(&resp);
        }
        busy | self.flush()
    }

    pub(super) fn queue<T: serde::Serialize>(&mut self, v: &T) {
        if let Ok(mut line) = serde_json::to_vec(v) {
            line.push(b'\n');
            self.wbuf.extend_from_slice(&line);
        }
    }

    /// A [`RecordBatch`](crate::control::proto::RecordBatch) line for a
    /// `subscribe_records` stream (nothing when the poll took no event and nothing was
    /// lost: a loss is reported at once, in a batch of no records); over
    /// [`MAX_PENDING_RECORDS`] the batch is counted lost instead (and reported once the
    /// subscriber has read its backlog).
    pub(super) fn push_records(&mut self, t: &TakenEvents) {
        let Some(sub) = self.sub.as_mut().filter(|s| s.records) else {
            return;
        };
        sub.lost += t.lost;
        if t.count == 0 && t.synced_skipped == 0 && sub.lost == 0 {
            return;
        }
        if self.wbuf.len() > MAX_PENDING_RECORDS {
            sub.lost += t.count;
            return;
        }
        // Written by hand straight into the write buffer: the same bytes as serde_json's
        // line of the `RecordBatch`, without its escape check of the base64 text.
        crate::ha::line::put_record_batch(
            &mut self.wbuf,
            &t.records,
            t.count,
            std::mem::take(&mut sub.lost),
            t.synced_skipped,
        );
        self.flush();
    }

    pub(super) fn push_events(&mut self, events: &[EventLine], lost: u64) {
        let Some(sub) = self.sub.as_mut().filter(|s| !s.records) else {
            return;
        };
        sub.lost += lost;
        let mut lines = Vec::new();
        for e in events {
            if !sub.events.is_empty() && !sub.events.contains(&e.kind) {
                continue;
            }
            if !sub.filter.matches(&e.entry) {
                continue;
            }
            if self.wbuf.len() + lines.len() > MAX_PENDING {
                sub.lost += 1;
                continue;
            }
            let mut e = e.clone();
            e.lost = std::mem::take(&mut sub.lost);
            if let Ok(l) = serde_json::to_vec(&e) {
                lines.extend_from_slice(&l);
                lines.push(b'\n');
            }
        }
        self.wbuf.extend_from_slice(&lines);
        self.flush();
    }

    pub(super) fn flush(&mut self) -> bool {
        let mut wrote = false;
        while !self.wbuf.is_empty() {
            match self.stream.write(&self.wbuf) {
                Ok(0) => {
                    self.closed = true;
                    break;
                }
                Ok(n) => {
                    wrote = true;
                    self.wbuf.drain(..n);
                }
                Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(_) => {
                    self.closed = true;
                    break;
                }
            }
        }
        wrote
    }
}

/// A request line as text. Valid UTF-8 (every line a client writes) is borrowed after
/// `from_utf8`'s check, which runs word by word over ASCII; anything else is replaced as
/// `String::from_utf8_lossy` does (its chunk walk is what every line paid before: ~350
/// instructions per record of an `ha_apply_records` line), and serde_json says where.
fn line_text(line: &[u8]) -> std::borrow::Cow<'_, str> {
    match std::str::from_utf8(line) {
        Ok(s) => std::borrow::Cow::Borrowed(s),
        Err(_) => String::from_utf8_lossy(line),
    }
}

/// Binds the control socket at `path` with mode 0600 (removing a stale socket file; the
/// parent directory is created). The socket is bound inside a fresh 0700 directory, made
/// 0600, then renamed into place, so there is no moment at which another user could
/// connect to it.
pub fn bind(path: &Path) -> std::io::Result<UnixListener> {
    use std::os::unix::fs::DirBuilderExt;
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => PathBuf::from("."),
    };
    std::fs::create_dir_all(&dir)?;
    match std::fs::remove_file(path) {
        Ok(()) => {}
        Err(e) if e.kind() == ErrorKind::NotFound => {}
        Err(e) => return Err(e),
    }
    let private = dir.join(format!(".fwd-bind-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&private);
    std::fs::DirBuilder::new().mode(0o700).create(&private)?;
    let tmp = private.join("s");
    let result = UnixListener::bind(&tmp).and_then(|l| {
        std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(0o600))?;
        std::fs::rename(&tmp, path)?;
        Ok(l)
    });
    let _ = std::fs::remove_dir_all(&private);
    result
}

#[cfg(test)]
mod tests {
    use super::line_text;
    use std::borrow::Cow;

    /// Valid UTF-8 is borrowed as it is; invalid bytes become U+FFFD as before.
    #[test]
    fn line_text_borrows_valid_utf8_and_replaces_the_rest() {
        let ok = line_text(b"{\"op\":\"status\"} \xc3\xa9");
        assert!(
            matches!(ok, Cow::Borrowed("{\"op\":\"status\"} \u{e9}")),
            "{ok:?}"
        );
        let bad = line_text(b"ab\xffc\xc3");
        assert_eq!(bad, "ab\u{fffd}c\u{fffd}");
        assert!(matches!(bad, Cow::Owned(_)));
    }
}
