//! `fwmgmt`: the management daemon (REST API + Prometheus metrics). See docs/mgmt.md.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use clap::Parser;
use mgmt::api::{AppState, router};
use mgmt::auth::Auth;
use mgmt::client::ControlClient;
use tower::ServiceExt;

/// The fwd management API and Prometheus exporter.
#[derive(Debug, Parser)]
#[command(name = "fwmgmt", version)]
// pub(crate): examples/mgmt-man.rs renders the man page from it.
pub(crate) struct Args {
    /// Address to listen on (TLS belongs to a reverse proxy in front).
    #[arg(long, env = "FWMGMT_LISTEN", default_value = "127.0.0.1:9477")]
    listen: SocketAddr,
    /// fwd's control socket.
    #[arg(
        long,
        env = "FWMGMT_CONTROL_SOCKET",
        default_value = "/run/fwd/control.sock"
    )]
    control_socket: PathBuf,
    /// File holding the bearer token (first line). Without it every write is refused.
    #[arg(long, env = "FWMGMT_TOKEN_FILE")]
    token_file: Option<PathBuf>,
    /// Serve the GET routes under /api/v1 without the token (the connection table, live
    /// events and the ruleset become readable by anyone who reaches the port).
    #[arg(long, env = "FWMGMT_OPEN_READS")]
    open_reads: bool,
    /// Require the token for /metrics too (then give Prometheus the token file).
    #[arg(long, env = "FWMGMT_AUTH_METRICS")]
    auth_metrics: bool,
    /// A host name served besides IP addresses and localhost (a reverse proxy's
    /// server_name); repeat or separate with commas.
    #[arg(long, env = "FWMGMT_ALLOWED_HOSTS", value_delimiter = ',')]
    allowed_host: Vec<String>,
    /// Most HTTP connections at once; more are closed when accepted.
    #[arg(long, env = "FWMGMT_MAX_CONNECTIONS", default_value_t = 64)]
    max_connections: usize,
    /// Most event streams (GET /api/v1/conntrack/events) at once; more get 429.
    #[arg(long, env = "FWMGMT_MAX_STREAMS", default_value_t = mgmt::api::MAX_STREAMS)]
    max_streams: usize,
    /// Time a client has to send a request's headers (and between requests on a kept-alive
    /// connection), in milliseconds.
    #[arg(long, env = "FWMGMT_HEADER_TIMEOUT_MS", default_value_t = 5000)]
    header_timeout_ms: u64,
    /// Time a client has to send a request's body, in milliseconds.
    #[arg(long, env = "FWMGMT_BODY_TIMEOUT_MS", default_value_t = 10_000)]
    body_timeout_ms: u64,
    /// Deadline of one control request, in milliseconds.
    #[arg(long, env = "FWMGMT_TIMEOUT_MS", default_value_t = 5000)]
    timeout_ms: u64,
    /// Deadline of the control requests of one /metrics scrape, in milliseconds.
    #[arg(long, env = "FWMGMT_SCRAPE_TIMEOUT_MS", default_value_t = 1000)]
    scrape_timeout_ms: u64,
    /// Run the connection-state sync daemon with this configuration (JSON: role, peer,
    /// bind, queue, ack_every, alive_ms; docs/ha.md).
    #[arg(long, env = "FWMGMT_HA")]
    ha: Option<PathBuf>,
}

async fn wait_for_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    match signal(SignalKind::terminate()) {
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

fn main() -> ExitCode {
    let args = Args::parse();
    let mut auth = match &args.token_file {
        Some(p) => match Auth::from_file(p) {
            Ok(a) => a,
            Err(e) => {
                eprintln!("fwmgmt: token file: {e}");
                return ExitCode::from(2);
            }
        },
        None => {
            eprintln!("fwmgmt: no --token-file: only the open routes are served");
            Auth::new(None)
        }
    };
    auth.open_reads = args.open_reads;
    auth.auth_metrics = args.auth_metrics;
    auth.allowed_hosts = args
        .allowed_host
        .iter()
        .map(|h| h.trim().to_ascii_lowercase())
        .filter(|h| !h.is_empty())
        .collect();
    if args.auth_metrics && args.token_file.is_none() {
        eprintln!("fwmgmt: --auth-metrics needs --token-file");
        return ExitCode::from(2);
    }
    let ha = match &args.ha {
        Some(p) => {
            let cfg = std::fs::read_to_string(p)
                .map_err(|e| e.to_string())
                .and_then(|t| mgmt::ha::HaConfig::parse(&t).map_err(|e| e.to_string()));
            match cfg {
                Ok(c) => Some(mgmt::ha::HaHandle::new(c)),
                Err(e) => {
                    eprintln!("fwmgmt: {}: {e}", p.display());
                    return ExitCode::from(2);
                }
            }
        }
        None => None,
    };
    let client = Arc::new(ControlClient::new(
        &args.control_socket,
        Duration::from_millis(args.timeout_ms),
    ));
    let mut state = AppState::new(
        Arc::clone(&client),
        Duration::from_millis(args.scrape_timeout_ms),
        auth,
    );
    state.streams = Arc::new(tokio::sync::Semaphore::new(args.max_streams));
    state.body_timeout = Duration::from_millis(args.body_timeout_ms);
    state.ha.clone_from(&ha);
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("fwmgmt: tokio runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    rt.block_on(async move {
        let listener = match tokio::net::TcpListener::bind(args.listen).await {
            Ok(l) => l,
            Err(e) => {
                eprintln!("fwmgmt: listen on {}: {e}", args.listen);
                return ExitCode::FAILURE;
            }
        };
        eprintln!(
            "fwmgmt: listening on {} (control socket {})",
            args.listen,
            args.control_socket.display()
        );
        if let Some(h) = ha {
            let bind = h.with(|s| s.config().bind);
            // Bound here so a bad address stops fwmgmt at once.
            let sync = match mgmt::ha::bind(&h).await {
                Ok(sock) => sock,
                Err(e) => {
                    eprintln!("fwmgmt: ha: bind {bind}: {e}");
                    return ExitCode::FAILURE;
                }
            };
            eprintln!("fwmgmt: state sync on {bind}");
            tokio::spawn(mgmt::ha::run(h, client, sync));
        }
        let limits = ServeLimits {
            connections: args.max_connections,
            header_timeout: Duration::from_millis(args.header_timeout_ms),
        };
        tokio::select! {
            () = serve(listener, router(state), limits) => ExitCode::FAILURE,
            () = wait_for_signal() => {
                eprintln!("fwmgmt: stopping");
                ExitCode::SUCCESS
            }
        }
    })
}

/// Connection-level limits of the HTTP server.
#[derive(Clone, Copy, Debug)]
struct ServeLimits {
    connections: usize,
    header_timeout: Duration,
}

/// Accepts connections, at most `limits.connections` at once (one more is closed at
/// once), each served by hyper with a header read timeout (slow or idle clients are cut
/// off); request bodies have their own timeout in the handlers.
async fn serve(listener: tokio::net::TcpListener, app: axum::Router, limits: ServeLimits) {
    use hyper_util::rt::{TokioIo, TokioTimer};
    let slots = Arc::new(tokio::sync::Semaphore::new(limits.connections));
    loop {
        let (stream, peer) = match listener.accept().await {
            Ok(c) => c,
            Err(e) => {
                eprintln!("fwmgmt: accept: {e}");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let Ok(slot) = Arc::clone(&slots).try_acquire_owned() else {
            drop(stream);
            continue;
        };
        let svc =
            hyper_util::service::TowerToHyperService::new(app.clone().map_request(
                |r: hyper::Request<hyper::body::Incoming>| r.map(axum::body::Body::new),
            ));
        tokio::spawn(async move {
            let conn = hyper::server::conn::http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(limits.header_timeout)
                .serve_connection(TokioIo::new(stream), svc);
            if let Err(e) = conn.await
                && !e.is_incomplete_message()
                && !e.is_timeout()
            {
                eprintln!("fwmgmt: connection from {peer}: {e}");
            }
            drop(slot);
        });
    }
}
