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

/// The fwd management API and Prometheus exporter.
#[derive(Debug, Parser)]
#[command(name = "fwmgmt", version)]
// pub(crate): examples/mgmt-man.rs renders the man page from it.
pub(crate) struct Args {
    /// Address to listen on (TLS belongs to a reverse proxy in front).
    #[arg(long, env = "FWMGMT_LISTEN", default_value = "127.0.0.1:9090")]
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
    /// Require the token for reads too (including /metrics).
    #[arg(long, env = "FWMGMT_AUTH_READS")]
    auth_reads: bool,
    /// Deadline of one control request, in milliseconds.
    #[arg(long, env = "FWMGMT_TIMEOUT_MS", default_value_t = 5000)]
    timeout_ms: u64,
    /// Deadline of the control requests of one /metrics scrape, in milliseconds.
    #[arg(long, env = "FWMGMT_SCRAPE_TIMEOUT_MS", default_value_t = 1000)]
    scrape_timeout_ms: u64,
}

/// How long open connections may take to finish after a stop signal.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(2);

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
    let auth = match &args.token_file {
        Some(p) => match Auth::from_file(p, args.auth_reads) {
            Ok(a) => a,
            Err(e) => {
                eprintln!("fwmgmt: token file: {e}");
                return ExitCode::from(2);
            }
        },
        None => {
            eprintln!("fwmgmt: no --token-file: the API is read-only");
            if args.auth_reads {
                eprintln!("fwmgmt: --auth-reads needs --token-file");
                return ExitCode::from(2);
            }
            Auth::new(None, false)
        }
    };
    let state = AppState {
        client: Arc::new(ControlClient::new(
            &args.control_socket,
            Duration::from_millis(args.timeout_ms),
        )),
        scrape_timeout: Duration::from_millis(args.scrape_timeout_ms),
    };
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
        // On SIGINT/SIGTERM stop accepting, let requests finish, and exit after at most
        // SHUTDOWN_GRACE even if event streams (which never end by themselves) are open.
        let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
        let shutdown = async move {
            wait_for_signal().await;
            let _ = stop_tx.send(());
        };
        let server = axum::serve(listener, router(state, auth)).with_graceful_shutdown(shutdown);
        let grace = async move {
            if stop_rx.await.is_ok() {
                tokio::time::sleep(SHUTDOWN_GRACE).await;
            } else {
                std::future::pending::<()>().await;
            }
        };
        tokio::select! {
            r = server => match r {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("fwmgmt: {e}");
                    ExitCode::FAILURE
                }
            },
            () = grace => {
                eprintln!("fwmgmt: open connections closed after {SHUTDOWN_GRACE:?}");
                ExitCode::SUCCESS
            }
        }
    })
}
