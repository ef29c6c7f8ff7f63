// Real redis-server processes on free loopback ports, started and stopped by the tests.

import { spawn } from 'node:child_process';
import net from 'node:net';
import { Duplex } from 'node:stream';

const READY = /ready to accept connections/i;
const START_TIMEOUT_MS = 10_000;

function freePort() {
  return new Promise((resolve, reject) => {
    const server = net.createServer();
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const { port } = server.address();
      server.close(() => resolve(port));
    });
  });
}

function startServer(port) {
  return new Promise((resolve, reject) => {
    const child = spawn(
      process.env.QUORUMLOCK_REDIS_SERVER || 'redis-server',
      ['--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no'],
      { stdio: ['ignore', 'pipe', 'pipe'] },
    );
    let output = '';
    const timer = setTimeout(() => fail(new Error(`redis-server on ${port} not ready:\n${output}`)), START_TIMEOUT_MS);
    const fail = (error) => {
      clearTimeout(timer);
      child.kill('SIGKILL');
      reject(error);
    };
    child.once('error', fail);
    child.once('exit', (code) => fail(new Error(`redis-server on ${port} exited with ${code}:\n${output}`)));
    child.stdout.on('data', (chunk) => {
      output += chunk;
      if (READY.test(output)) {
        clearTimeout(timer);
        child.removeAllListeners('exit');
        child.stdout.removeAllListeners('data');
        child.stdout.resume();
        child.stderr.resume();
        resolve(child);
      }
    });
  });
}

async function startNode() {
  // Another process may take the port between the probe and the bind: try a few.
  for (let attempt = 1; ; attempt++) {
    const port = await freePort();
    try {
      return { port, child: await startServer(port) };
    } catch (error) {
      if (attempt >= 5) throw error;
    }
  }
}

function stopped(child) {
  return new Promise((resolve) => {
    if (child.exitCode !== null || child.signalCode !== null) return resolve();
    child.once('exit', () => resolve());
    child.kill('SIGKILL');
  });
}

/** `count` independent redis-server nodes. */
export async function startCluster(count) {
  const nodes = await Promise.all(Array.from({ length: count }, startNode));
  const admins = [];
  const cluster = {
    ports: nodes.map((node) => node.port),
    /** Kills node `index`: connections to it are refused from now on. */
    kill: (index) => stopped(nodes[index].child),
    /** Stops node `index` answering (SIGSTOP) while it keeps accepting connections. */
    pause: (index) => nodes[index].child.kill('SIGSTOP'),
    resume: (index) => nodes[index].child.kill('SIGCONT'),
    /** Sends one command to node `index` on a connection kept for the test's assertions. */
    async command(index, ...args) {
      admins[index] ??= rawExecutor(nodes[index].port);
      return admins[index](args);
    },
    /** The value of `key` on every node (null where it is absent or the node is dead). */
    async values(key) {
      return Promise.all(nodes.map((_, index) => cluster.command(index, 'GET', key).catch(() => null)));
    },
    async stop() {
      for (const admin of admins) admin?.close();
      await Promise.all(nodes.map((node) => stopped(node.child)));
    },
  };
  return cluster;
}

/** A minimal RESP client on a Node socket, for assertions and dead-node tests (a real client
 * library may keep reconnecting to a dead port and keep the process alive). */
export function rawExecutor(port) {
  let socket = null;
  let buffer = '';
  const pending = [];
  const failAll = (error) => {
    for (const entry of pending.splice(0)) entry.reject(error);
    socket = null;
  };
  const open = () => {
    socket = net.connect(port, '127.0.0.1');
    socket.setEncoding('utf8');
    socket.on('data', (chunk) => {
      buffer += chunk;
      for (;;) {
        const end = buffer.indexOf('\r\n');
        if (end < 0) return;
        const line = buffer.slice(0, end);
        let consumed = end + 2;
        let value;
        if (line[0] === '$') {
          const length = Number(line.slice(1));
          if (length >= 0) {
            if (buffer.length < consumed + length + 2) return;
            value = buffer.slice(consumed, consumed + length);
            consumed += length + 2;
          } else value = null;
        } else if (line[0] === ':') value = Number(line.slice(1));
        else if (line[0] === '-') value = Object.assign(new Error(line.slice(1)), { name: 'ReplyError' });
        else value = line.slice(1);
        buffer = buffer.slice(consumed);
        const entry = pending.shift();
        if (value instanceof Error) entry?.reject(value);
        else entry?.resolve(value);
      }
    });
    socket.on('error', failAll);
    socket.on('close', () => failAll(new Error('connection closed')));
  };
  const execute = (args) =>
    new Promise((resolve, reject) => {
      if (!socket) open();
      pending.push({ resolve, reject });
      socket.write(`*${args.length}\r\n${args.map((a) => `$${Buffer.byteLength(String(a))}\r\n${a}\r\n`).join('')}`);
    });
  execute.close = () => socket?.destroy();
  return execute;
}

/** A `connect` function for `respExecutor`, over a Node socket. */
export function nodeSocket(port) {
  return () => {
    const socket = net.connect(port, '127.0.0.1');
    const { readable, writable } = Duplex.toWeb(socket);
    return { readable, writable, close: () => socket.destroy() };
  };
}
