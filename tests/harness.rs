//! Tests of the `redis-server` harness itself, speaking raw RESP over
//! `std::net::TcpStream` so they do not depend on the client under test.

use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use nix::errno::Errno;
use nix::sys::signal;
use nix::unistd::Pid;
use quorumlock::testing::{HarnessError, RedisCluster, RedisNode};

const PING: &[u8] = b"*1\r\n$4\r\nPING\r\n";
const PONG: &[u8] = b"+PONG\r\n";
/// Bounds every read, so that a broken harness fails a test instead of
/// hanging it.
const REPLY_TIMEOUT: Duration = Duration::from_secs(5);

fn connect(addr: SocketAddr) -> TcpStream {
    let stream = TcpStream::connect_timeout(&addr, REPLY_TIMEOUT)
        .unwrap_or_else(|err| panic!("connect to {addr}: {err}"));
    stream.set_read_timeout(Some(REPLY_TIMEOUT)).unwrap();
    stream.set_write_timeout(Some(REPLY_TIMEOUT)).unwrap();
    stream
}

fn resp(args: &[&str]) -> Vec<u8> {
    let mut out = format!("*{}\r\n", args.len()).into_bytes();
    for arg in args {
        out.extend_from_slice(format!("${}\r\n{arg}\r\n", arg.len()).as_bytes());
    }
    out
}

fn expect_reply(stream: &mut TcpStream, expected: &[u8]) {
    let mut reply = vec![0; expected.len()];
    stream.read_exact(&mut reply).expect("reading the reply");
    assert_eq!(
        String::from_utf8_lossy(&reply),
        String::from_utf8_lossy(expected)
    );
}

fn command(stream: &mut TcpStream, args: &[&str], expected: &[u8]) {
    stream.write_all(&resp(args)).unwrap();
    expect_reply(stream, expected);
}

fn ping(addr: SocketAddr) {
    let mut stream = connect(addr);
    stream.write_all(PING).unwrap();
    expect_reply(&mut stream, PONG);
}

fn process_exists(pid: u32) -> bool {
    let pid = Pid::from_raw(i32::try_from(pid).expect("pid fits in pid_t"));
    match signal::kill(pid, None) {
        Ok(()) => true,
        Err(Errno::ESRCH) => false,
        Err(err) => panic!("probing pid {pid}: {err}"),
    }
}

#[test]
fn three_nodes_answer_ping() {
    let cluster = RedisCluster::start(3).unwrap();
    assert_eq!(cluster.len(), 3);
    let urls = cluster.urls();
    assert_eq!(urls.len(), 3);
    for (i, url) in urls.iter().enumerate() {
        let node = cluster.node(i);
        assert_eq!(*url, format!("redis://127.0.0.1:{}", node.port()));
        assert_eq!(*url, node.url());
        assert!(node.is_running());
        assert!(node.pid().is_some());
        ping(node.addr());
    }
    let mut ports: Vec<u16> = cluster.nodes().iter().map(RedisNode::port).collect();
    ports.sort_unstable();
    ports.dedup();
    assert_eq!(ports.len(), 3, "every node has its own port");
}

#[test]
fn kill_refuses_connections_and_restart_comes_back_empty() {
    let cluster = RedisCluster::start(3).unwrap();
    let node = cluster.node(1);
    let port = node.port();
    let old_pid = node.pid().unwrap();

    let mut stream = connect(node.addr());
    command(&mut stream, &["SET", "key", "value"], b"+OK\r\n");
    drop(stream);

    cluster.kill(1).unwrap();
    assert!(!node.is_running());
    assert_eq!(node.pid(), None);
    assert!(!process_exists(old_pid));
    let err = TcpStream::connect(node.addr()).expect_err("a killed node must refuse");
    assert_eq!(err.kind(), io::ErrorKind::ConnectionRefused);
    // Killing twice is harmless; signalling a dead node is an error.
    cluster.kill(1).unwrap();
    assert!(matches!(
        cluster.pause(1),
        Err(HarnessError::Signal(Errno::ESRCH))
    ));
    // The others are unaffected.
    ping(cluster.node(0).addr());
    ping(cluster.node(2).addr());

    cluster.restart(1).unwrap();
    assert_eq!(node.port(), port, "restart keeps the port");
    assert!(node.is_running());
    assert_ne!(node.pid(), Some(old_pid));
    ping(node.addr());
    let mut stream = connect(node.addr());
    command(&mut stream, &["GET", "key"], b"$-1\r\n");
}

#[test]
fn restart_of_a_running_node_replaces_it() {
    let cluster = RedisCluster::start(1).unwrap();
    let old_pid = cluster.node(0).pid().unwrap();
    cluster.restart(0).unwrap();
    assert!(!process_exists(old_pid));
    assert_ne!(cluster.node(0).pid(), Some(old_pid));
    ping(cluster.node(0).addr());
}

#[test]
fn pause_stops_answers_until_resume() {
    let cluster = RedisCluster::start(1).unwrap();
    let node = cluster.node(0);
    cluster.pause(0).unwrap();
    assert!(node.is_running(), "a paused node is still alive");

    // The kernel completes the handshake from the listen backlog, so only
    // the answer is missing.
    let mut stream = connect(node.addr());
    stream.write_all(PING).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_millis(300)))
        .unwrap();
    let mut byte = [0u8; 1];
    let err = stream
        .read(&mut byte)
        .expect_err("a paused node must not answer");
    assert!(
        matches!(
            err.kind(),
            io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
        ),
        "unexpected error: {err}"
    );

    cluster.resume(0).unwrap();
    stream.set_read_timeout(Some(REPLY_TIMEOUT)).unwrap();
    expect_reply(&mut stream, PONG);
}

#[test]
fn drop_kills_every_process_and_removes_directories() {
    let cluster = RedisCluster::start(3).unwrap();
    // A paused node and a killed one must not confuse the cleanup.
    cluster.pause(0).unwrap();
    cluster.kill(2).unwrap();
    let pids: Vec<u32> = cluster.nodes().iter().filter_map(RedisNode::pid).collect();
    assert_eq!(pids.len(), 2);
    let dirs: Vec<_> = cluster.nodes().iter().map(|n| n.dir().to_owned()).collect();
    for dir in &dirs {
        assert!(dir.is_dir(), "{} should exist while running", dir.display());
    }

    drop(cluster);

    for pid in pids {
        assert!(!process_exists(pid), "pid {pid} survived the drop");
    }
    for dir in dirs {
        assert!(!dir.exists(), "{} survived the drop", dir.display());
    }
}

#[test]
fn missing_binary_is_reported_clearly() {
    let program = "/nonexistent/quorumlock-test/redis-server";
    let err = RedisCluster::start_with_program(program, 2, &[]).unwrap_err();
    match &err {
        HarnessError::RedisServerNotFound { program: tried } => assert_eq!(tried, program),
        other => panic!("expected RedisServerNotFound, got {other:?}"),
    }
    let message = err.to_string();
    assert_eq!(
        message,
        format!(
            "redis-server not found (tried \"{program}\"): install it \
             (Debian: apt-get install redis-server) or set QUORUMLOCK_REDIS_SERVER"
        )
    );
}

#[test]
fn extra_args_reach_the_server() {
    let cluster = RedisCluster::start_with_args(1, &["--requirepass", "secret"]).unwrap();
    let mut stream = connect(cluster.node(0).addr());
    stream.write_all(PING).unwrap();
    let mut line = String::new();
    BufReader::new(&mut stream).read_line(&mut line).unwrap();
    assert!(line.starts_with("-NOAUTH"), "unexpected reply {line:?}");
    command(&mut stream, &["AUTH", "secret"], b"+OK\r\n");
    stream.write_all(PING).unwrap();
    expect_reply(&mut stream, PONG);
}

#[test]
fn a_server_that_exits_reports_its_output() {
    let err = RedisCluster::start_with_args(1, &["--no-such-directive", "1"]).unwrap_err();
    match err {
        HarnessError::NotReady { output, .. } => {
            assert!(
                output.contains("no-such-directive"),
                "the output should explain the failure: {output:?}"
            );
            assert!(
                output.contains("[harness] redis-server exited"),
                "the output should say the server exited: {output:?}"
            );
        }
        other => panic!("expected NotReady, got {other:?}"),
    }
}

#[test]
fn bad_indices_are_errors() {
    let cluster = RedisCluster::start(1).unwrap();
    assert!(cluster.get(1).is_none());
    for result in [
        cluster.kill(1),
        cluster.pause(1),
        cluster.resume(1),
        cluster.restart(1),
    ] {
        assert!(matches!(result, Err(HarnessError::NoSuchNode(1))));
    }
}
