//! The Rust side of the cross-client test of the npm package: both clients must behave as one
//! lock on the same resources, since they send the same commands.
//!
//! `cross_client hold RESOURCE…` takes the lock in one attempt, prints `locked TOKEN`, holds it
//! until a line (or end of input) arrives on stdin, releases it and prints `released`.
//! `cross_client try RESOURCE…` makes one attempt and prints `locked TOKEN` (then releases) or
//! `refused CODE`. `cross_client wait RESOURCE…` waits for the lock, retrying every two seconds
//! (woken at once by a release, from whichever client), then prints as `try` does. Nodes come
//! from `QUORUMLOCK_NODES`.

use std::io::BufRead;
use std::process::ExitCode;
use std::time::Duration;

use quorumlock::{Error, Lock, Redlock, Retry};
use quorumlock_examples::nodes_from_env_or_local;

#[tokio::main]
async fn main() -> Result<ExitCode, Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let mode = args.next().unwrap_or_default();
    let resources: Vec<String> = args.collect();
    if !matches!(mode.as_str(), "hold" | "try" | "wait") || resources.is_empty() {
        eprintln!("usage: cross_client hold|try|wait RESOURCE...");
        return Ok(ExitCode::from(2));
    }
    let nodes = nodes_from_env_or_local()?;
    let redlock = Redlock::builder(nodes.urls.clone())
        .ttl(Duration::from_secs(30))
        // A roomy deadline: a busy test machine must not pass for a contended lock.
        .request_timeout(Duration::from_secs(1))
        .build()?;
    // A pause far longer than a hand-off takes: a waiter that gets the lock sooner was woken.
    let retry = if mode == "wait" {
        Retry::new(30, Duration::from_secs(2), Duration::ZERO)
    } else {
        Retry::NONE
    };
    // One resource goes out as plain SET NX PX, several as the acquire script.
    match redlock.lock_multi(resources).retry(retry).await {
        Ok(lock) => finish(&mode, lock).await,
        Err(error) => refused(&error),
    }
}

async fn finish(mode: &str, lock: Lock) -> Result<ExitCode, Box<dyn std::error::Error>> {
    println!("locked {}", lock.token());
    if mode == "hold" {
        tokio::task::spawn_blocking(|| {
            let mut line = String::new();
            std::io::stdin().lock().read_line(&mut line)
        })
        .await??;
    }
    lock.release().await;
    println!("released");
    Ok(ExitCode::SUCCESS)
}

fn refused(error: &Error) -> Result<ExitCode, Box<dyn std::error::Error>> {
    let code = if error.is_contended() {
        "LOCK_CONTENDED"
    } else {
        "FAILED"
    };
    println!("refused {code} {error}");
    Ok(ExitCode::SUCCESS)
}
