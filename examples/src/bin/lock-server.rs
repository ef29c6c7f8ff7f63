//! The example HTTP service behind `LockLayer`, served by one or more app instances that share
//! the same Redis nodes.
//!
//! ```text
//! cargo run -p quorumlock-examples --bin lock-server
//! curl -i 'http://127.0.0.1:3001/lock?resource_id=42&ms=5000' &
//! curl -i 'http://127.0.0.1:3002/lock?resource_id=42'          # 423 Locked, Retry-After
//! ```
//!
//! Options: `--listen ADDR` (repeatable: one instance per address; default 127.0.0.1:3001 and
//! 127.0.0.1:3002), `--name NAME` (repeatable, by position; default A, B, …), `--critical-ms N`
//! (default 2000), `--ttl-ms N` (default 5000), `--wait-ms N` (how long `/wait` waits, default
//! 10000). Nodes come from `QUORUMLOCK_NODES`, or three local redis-server processes are
//! started. Stops on Ctrl-C or SIGTERM, and stops the local nodes with it.

use axum::serve::ListenerExt;
use std::net::SocketAddr;
use std::process::ExitCode;
use std::time::Duration;

use quorumlock::Redlock;
use quorumlock_examples::app::{router, AppSettings, NAMESPACE};
use quorumlock_examples::nodes_from_env_or_local;
use tokio::net::TcpListener;
use tokio::sync::watch;

/// How long open requests (a long stream, say) may finish after a stop signal.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(5);

struct Options {
    listen: Vec<SocketAddr>,
    names: Vec<String>,
    critical: Duration,
    ttl: Duration,
    wait: Duration,
}

fn parse_options() -> Result<Options, String> {
    let mut options = Options {
        listen: Vec::new(),
        names: Vec::new(),
        critical: Duration::from_millis(2000),
        ttl: Duration::from_millis(5000),
        wait: Duration::from_millis(10_000),
    };
    let mut args = std::env::args().skip(1);
    while let Some(flag) = args.next() {
        if flag == "--help" || flag == "-h" {
            return Err(String::new());
        }
        let value = args.next().ok_or_else(|| format!("{flag} needs a value"))?;
        let millis = || {
            value
                .parse::<u64>()
                .map(Duration::from_millis)
                .map_err(|_| format!("{flag} takes whole milliseconds, not {value:?}"))
        };
        match flag.as_str() {
            "--listen" => options.listen.push(
                value
                    .parse()
                    .map_err(|_| format!("--listen takes IP:PORT, not {value:?}"))?,
            ),
            "--name" => options.names.push(value),
            "--critical-ms" => options.critical = millis()?,
            "--ttl-ms" => options.ttl = millis()?,
            "--wait-ms" => options.wait = millis()?,
            _ => return Err(format!("unknown option {flag}")),
        }
    }
    if options.listen.is_empty() {
        options.listen = vec![
            SocketAddr::from(([127, 0, 0, 1], 3001)),
            SocketAddr::from(([127, 0, 0, 1], 3002)),
        ];
    }
    if options.names.len() > options.listen.len() {
        return Err("more --name than --listen".into());
    }
    for index in options.names.len()..options.listen.len() {
        options.names.push(instance_name(index));
    }
    Ok(options)
}

/// A, B, … Z, then I26, I27, …
fn instance_name(index: usize) -> String {
    match u8::try_from(index) {
        Ok(i) if i < 26 => char::from(b'A' + i).to_string(),
        _ => format!("I{index}"),
    }
}

const USAGE: &str = "usage: lock-server [--listen IP:PORT]... [--name NAME]... \
[--critical-ms N] [--ttl-ms N] [--wait-ms N]";

#[tokio::main]
async fn main() -> ExitCode {
    let options = match parse_options() {
        Ok(options) => options,
        Err(problem) if problem.is_empty() => {
            println!("{USAGE}");
            return ExitCode::SUCCESS;
        }
        Err(problem) => {
            eprintln!("lock-server: {problem}\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    match serve(options).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(problem) => {
            eprintln!("lock-server: {problem}");
            ExitCode::FAILURE
        }
    }
}

async fn serve(options: Options) -> Result<(), Box<dyn std::error::Error>> {
    // Declared first so it is dropped last: local nodes stop only after every instance.
    let nodes = nodes_from_env_or_local()?;
    let (stop, stopped) = watch::channel(false);
    let mut instances = tokio::task::JoinSet::new();
    for (addr, name) in options.listen.iter().zip(&options.names) {
        // Each instance has its own client and connections, as separate processes would.
        let redlock = Redlock::builder(nodes.urls.clone())
            .ttl(options.ttl)
            .build()?;
        // Connected before serving: a wrong URL or password shows now rather than on the first
        // request. A minority of nodes down is no reason not to serve.
        if let Err(error) = redlock.connect().await {
            if !error.has_quorum() {
                return Err(error.into());
            }
            eprintln!("instance {name}: {error}");
        }
        let app = router(
            redlock,
            AppSettings {
                instance: name.clone(),
                critical: options.critical,
                wait: options.wait,
            },
        );
        let listener = TcpListener::bind(addr)
            .await
            .map_err(|e| format!("cannot listen on {addr}: {e} (try --listen 127.0.0.1:0)"))?;
        let local = listener.local_addr()?;
        println!("instance {name} listening on http://{local}");
        let mut stopped = stopped.clone();
        // Responses under a lock end with a frame written after the release round: without
        // TCP_NODELAY that second small write waits for the client's delayed ACK (~40 ms).
        let listener = listener.tap_io(|tcp| {
            if let Err(error) = tcp.set_nodelay(true) {
                eprintln!("cannot set TCP_NODELAY: {error}");
            }
        });
        instances.spawn(async move {
            axum::serve(listener, app)
                .with_graceful_shutdown(async move {
                    let _ = stopped.wait_for(|stop| *stop).await;
                })
                .await
        });
    }
    println!(
        "locks live under Redis keys {NAMESPACE}<resource> on {}; Ctrl-C stops",
        nodes.urls.join(", ")
    );

    shutdown_signal().await?;
    eprintln!("stopping");
    let _ = stop.send(true);
    let drained = tokio::time::timeout(DRAIN_TIMEOUT, async {
        while let Some(result) = instances.join_next().await {
            result??;
        }
        Ok::<_, Box<dyn std::error::Error>>(())
    })
    .await;
    match drained {
        Ok(result) => result?,
        Err(_) => eprintln!("requests still open after {DRAIN_TIMEOUT:?}: closing them"),
    }
    drop(instances);
    drop(nodes);
    Ok(())
}

async fn shutdown_signal() -> std::io::Result<()> {
    let mut terminate = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    tokio::select! {
        result = tokio::signal::ctrl_c() => result,
        _ = terminate.recv() => Ok(()),
    }
}
