//! `make demo`: three Redis nodes, two app instances of `lock-server` as separate processes,
//! and concurrent HTTP requests against both; prints who got each lock, who was refused and
//! why. Stops every process it started before it exits.

// The tables show how long each request took, which needs the clock.
#![allow(clippy::disallowed_methods)]

use std::error::Error;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use futures_util::future::join_all;
use quorumlock_examples::app::NAMESPACE;
use quorumlock_examples::http_client::{HttpClient, Reply};
use quorumlock_examples::nodes_from_env_or_local;
use quorumlock_examples::server_process::{sibling_binary, ServerProcess};

/// Lock TTL of the app instances: also the `Retry-After` of their `423` answers.
const TTL_MS: &str = "2000";

type DemoResult<T> = Result<T, Box<dyn Error + Send + Sync>>;

#[tokio::main]
async fn main() -> ExitCode {
    match run().await {
        Ok(()) => ExitCode::SUCCESS,
        Err(problem) => {
            eprintln!("demo failed: {problem}");
            ExitCode::FAILURE
        }
    }
}

async fn run() -> DemoResult<()> {
    let server_binary = sibling_binary("lock-server")?;
    // Dropped last: the app instances stop before the nodes they use.
    let nodes = nodes_from_env_or_local()?;
    let urls = nodes.urls.clone();
    let (a, b) = tokio::task::spawn_blocking(move || -> std::io::Result<_> {
        let args = ["--ttl-ms", TTL_MS, "--critical-ms", "1000"];
        let a = ServerProcess::start(&server_binary, "A", &urls, &args)?;
        let b = ServerProcess::start(&server_binary, "B", &urls, &args)?;
        Ok((a, b))
    })
    .await??;
    println!(
        "two app instances of lock-server: A at http://{} (pid {}), B at http://{} (pid {}),\n\
         sharing the Redis nodes {}; lock keys are {NAMESPACE}<resource>, TTL {TTL_MS} ms",
        a.addr(),
        a.pid().unwrap_or_default(),
        b.addr(),
        b.pid().unwrap_or_default(),
        nodes.urls.join(", ")
    );

    let demo = Demo {
        client: HttpClient::new(),
        instances: [&a, &b],
        node_urls: nodes.urls.clone(),
    };
    let outcome = demo.scenarios(nodes.local.as_ref()).await;

    let (a_pid, b_pid) = (a.pid(), b.pid());
    let stopped = tokio::task::spawn_blocking(move || (a.stop(), b.stop())).await?;
    let local = nodes.local.is_some();
    drop(nodes);
    println!(
        "\nstopped app instances A (pid {}, {}) and B (pid {}, {}){}",
        a_pid.unwrap_or_default(),
        describe_exit(&stopped.0),
        b_pid.unwrap_or_default(),
        describe_exit(&stopped.1),
        if local {
            " and the three local redis-server nodes"
        } else {
            ""
        }
    );
    outcome?;
    stopped.0?;
    stopped.1?;
    Ok(())
}

fn describe_exit(status: &std::io::Result<std::process::ExitStatus>) -> String {
    match status {
        Ok(status) if status.success() => "exited cleanly".to_owned(),
        Ok(status) => format!("{status}"),
        Err(error) => format!("could not be stopped: {error}"),
    }
}

struct Demo<'a> {
    client: HttpClient,
    instances: [&'a ServerProcess; 2],
    node_urls: Vec<String>,
}

/// One line of a table.
struct Row {
    request: String,
    instance: String,
    reply: DemoResult<Reply>,
    took: Duration,
}

impl Demo<'_> {
    async fn scenarios(&self, local: Option<&quorumlock::testing::RedisCluster>) -> DemoResult<()> {
        self.global_lock().await?;
        self.per_resource().await?;
        self.waiting().await?;
        self.streaming().await?;
        if let Some(cluster) = local {
            self.no_quorum(cluster).await?;
        }
        Ok(())
    }

    async fn global_lock(&self) -> DemoResult<()> {
        heading(
            "1. Six concurrent GET /try-to-acquire-global-lock, three per instance; the winner \
             works for 1 s under the lock",
        );
        let requests = (0..6).map(|i| (i % 2, "/try-to-acquire-global-lock".to_owned()));
        print_table(&self.concurrently(requests).await);
        println!(
            "   The lock is released with the response, so the next request gets it (the service \
             this is modelled on never released it):"
        );
        let again = self
            .concurrently([(1, "/try-to-acquire-global-lock?ms=0".to_owned())])
            .await;
        print_table(&again);
        Ok(())
    }

    async fn per_resource(&self) -> DemoResult<()> {
        heading(
            "2. GET /lock?resource_id=X on both instances at once: one request per resource \
             proceeds, different resources in parallel",
        );
        let requests = [
            (0, "/lock?resource_id=invoice-1&ms=800"),
            (1, "/lock?resource_id=invoice-1&ms=800"),
            (0, "/lock?resource_id=invoice-2&ms=800"),
            (1, "/lock?resource_id=invoice-2&ms=800"),
        ]
        .map(|(i, path)| (i, path.to_owned()));
        print_table(&self.concurrently(requests).await);
        Ok(())
    }

    async fn waiting(&self) -> DemoResult<()> {
        heading(
            "3. GET /wait?resource_id=report, four at once: they queue for the lock and run one \
             after the other (300 ms each)",
        );
        let requests = (0..4).map(|i| (i % 2, "/wait?resource_id=report&ms=300".to_owned()));
        print_table(&self.concurrently(requests).await);
        Ok(())
    }

    async fn streaming(&self) -> DemoResult<()> {
        heading(
            "4. A streaming response holds its lock until the last byte, extended past the TTL: \
             GET /stream?resource_id=export on A, 5 chunks 600 ms apart",
        );
        let key = format!("{NAMESPACE}export");
        let [a, b] = self.instances;
        let mut stream = self
            .client
            .open(&a.url("/stream?resource_id=export&chunks=5&interval_ms=600"))
            .await?;
        println!("   A answered {}", stream.status);
        let mut chunks = 0;
        while let Some(chunk) = stream.next_chunk().await? {
            for line in chunk.lines() {
                println!("   A streams: {line}");
            }
            chunks += 1;
            if chunks == 1 {
                println!(
                    "   Redis PTTL of {key} on each node, mid-stream: {} ms",
                    self.pttl(&key).await
                );
                let started = Instant::now();
                let refused = self.client.get(&b.url("/lock?resource_id=export")).await;
                print_table(&[Row {
                    request: "/lock?resource_id=export while A streams".into(),
                    instance: b.name().to_owned(),
                    reply: refused,
                    took: started.elapsed(),
                }]);
            }
        }
        // The layer releases the lock before it lets the end of the response through.
        let pttl = self.pttl(&key).await;
        if pttl
            .split(", ")
            .all(|ms| ms.trim_matches(['[', ']']) == "-2")
        {
            println!(
                "   stream over, and {key} is already gone from Redis (PTTL on each node: {pttl})"
            );
        } else {
            println!("   stream over, but {key} is still in Redis: PTTL {pttl}");
        }
        let started = Instant::now();
        let granted = self
            .client
            .get(&b.url("/lock?resource_id=export&ms=0"))
            .await;
        print_table(&[Row {
            request: "/lock?resource_id=export after the stream".into(),
            instance: b.name().to_owned(),
            reply: granted,
            took: started.elapsed(),
        }]);
        Ok(())
    }

    async fn no_quorum(&self, cluster: &quorumlock::testing::RedisCluster) -> DemoResult<()> {
        heading("5. Two of the three Redis nodes are killed: no quorum, so no lock and no handler");
        cluster.kill(1)?;
        cluster.kill(2)?;
        let requests = [(0, "/lock?resource_id=invoice-1&ms=0".to_owned())];
        print_table(&self.concurrently(requests).await);
        Ok(())
    }

    /// Sends every request at once; each is `(instance index, path)`.
    async fn concurrently(&self, requests: impl IntoIterator<Item = (usize, String)>) -> Vec<Row> {
        let started = Instant::now();
        let pending = requests.into_iter().map(|(instance, path)| {
            let server = self.instances[instance];
            let url = server.url(&path);
            async move {
                let reply = self.client.get(&url).await;
                Row {
                    request: path,
                    instance: server.name().to_owned(),
                    reply,
                    took: started.elapsed(),
                }
            }
        });
        join_all(pending).await
    }

    /// `PTTL key` on every node, as `[a, b, c]`.
    async fn pttl(&self, key: &str) -> String {
        let mut values = Vec::new();
        for url in &self.node_urls {
            let value = async {
                let client = redis::Client::open(url.as_str())?;
                let mut connection = client.get_multiplexed_async_connection().await?;
                redis::cmd("PTTL")
                    .arg(key)
                    .query_async::<i64>(&mut connection)
                    .await
            }
            .await;
            values.push(value.map_or_else(|e| format!("error: {e}"), |ms| ms.to_string()));
        }
        format!("[{}]", values.join(", "))
    }
}

fn heading(text: &str) {
    println!("\n== {text}");
}

fn print_table(rows: &[Row]) {
    print_rows(rows);
    if rows.len() > 1 {
        let mut counts: Vec<(String, usize)> = Vec::new();
        for row in rows {
            let status = row
                .reply
                .as_ref()
                .map_or_else(|_| "no answer".to_owned(), |r| r.status.to_string());
            match counts.iter_mut().find(|(s, _)| *s == status) {
                Some((_, n)) => *n += 1,
                None => counts.push((status, 1)),
            }
        }
        let summary: Vec<String> = counts.iter().map(|(s, n)| format!("{n} × {s}")).collect();
        println!("   → {}", summary.join(", "));
    }
}

fn print_rows(rows: &[Row]) {
    let request_width = rows
        .iter()
        .map(|row| row.request.len())
        .max()
        .unwrap_or(0)
        .max("request".len());
    println!(
        "   {:>2}  {:<request_width$}  {:<8}  {:<23}  {:<11}  {:>7}  answer",
        "#", "request", "instance", "status", "Retry-After", "time"
    );
    for (index, row) in rows.iter().enumerate() {
        let (status, retry_after, answer) = match &row.reply {
            Ok(reply) => (
                reply.status.to_string(),
                reply
                    .retry_after
                    .as_ref()
                    .map_or_else(String::new, |s| format!("{s} s")),
                reply.body.trim_end().to_owned(),
            ),
            Err(error) => ("no answer".to_owned(), String::new(), error.to_string()),
        };
        println!(
            "   {:>2}  {:<request_width$}  {:<8}  {:<23}  {:<11}  {:>4} ms  {}",
            index + 1,
            row.request,
            row.instance,
            status,
            retry_after,
            row.took.as_millis(),
            answer
        );
    }
}
