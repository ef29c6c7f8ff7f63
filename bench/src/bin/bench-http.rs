//! The axum service of the Tower-layer scenario, on a free loopback port.
//!
//! `bench-http [--nodelay] NAMESPACE URL…` prints `listening 127.0.0.1:PORT` once it accepts
//! connections and serves until killed or until its standard input closes. `axum::serve` leaves
//! Nagle's algorithm on; `--nodelay` sets `TCP_NODELAY` on every connection, as many
//! production servers do.
#![forbid(unsafe_code)]

use std::io::Read;
use std::process::ExitCode;
use std::time::Duration;

use quorumlock::Redlock;

fn main() -> ExitCode {
    let mut args: Vec<String> = std::env::args().skip(1).collect();
    let nodelay = args.first().is_some_and(|arg| arg == "--nodelay");
    if nodelay {
        args.remove(0);
    }
    let Some((namespace, urls)) = args.split_first() else {
        eprintln!("usage: bench-http [--nodelay] NAMESPACE URL…");
        return ExitCode::from(2);
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("bench-http: {error}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(serve(namespace, urls, nodelay)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("bench-http: {error}");
            ExitCode::FAILURE
        }
    }
}

async fn serve(namespace: &str, urls: &[String], nodelay: bool) -> Result<(), String> {
    let redlock = Redlock::builder(urls.iter().cloned())
        .ttl(Duration::from_secs(10))
        .build()
        .map_err(|e| e.to_string())?;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .map_err(|e| e.to_string())?;
    let address = listener.local_addr().map_err(|e| e.to_string())?;
    let listener = axum::serve::ListenerExt::tap_io(listener, move |stream| {
        if nodelay {
            let _ = stream.set_nodelay(true);
        }
    });
    println!("listening {address}");
    let app = quorumlock_bench::http_app::router(redlock, namespace);
    // The orchestrator closes our standard input when it is done, or when it dies.
    let parent_gone = async {
        let _ = tokio::task::spawn_blocking(|| std::io::stdin().read(&mut [0u8; 1])).await;
    };
    axum::serve(listener, app)
        .with_graceful_shutdown(parent_gone)
        .await
        .map_err(|e| e.to_string())
}
