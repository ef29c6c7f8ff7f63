// A local stand-in for the Upstash REST API (POST / with a JSON command array), forwarding to a
// real redis-server, so the @upstash/redis executor is tested against real Redis semantics.

import http from 'node:http';
import { rawExecutor } from './redis.mjs';

function encode(value, base64) {
  if (!base64) return value;
  if (typeof value === 'string') return value === 'OK' ? value : Buffer.from(value).toString('base64');
  if (Array.isArray(value)) return value.map((item) => encode(item, base64));
  return value;
}

/** Starts a bridge to the Redis node on `redisPort`; resolves with its URL and `close()`. */
export async function startUpstashBridge(redisPort) {
  const redis = rawExecutor(redisPort);
  const server = http.createServer((request, response) => {
    let body = '';
    request.setEncoding('utf8');
    request.on('data', (chunk) => (body += chunk));
    request.on('end', async () => {
      const base64 = request.headers['upstash-encoding'] === 'base64';
      const send = (status, payload) => {
        response.writeHead(status, { 'content-type': 'application/json' });
        response.end(JSON.stringify(payload));
      };
      let command;
      try {
        command = JSON.parse(body);
      } catch {
        return send(400, { error: 'ERR malformed JSON' });
      }
      if (!Array.isArray(command) || command.length === 0) return send(400, { error: 'ERR not a command' });
      try {
        send(200, { result: encode(await redis(command.map(String)), base64) });
      } catch (error) {
        send(400, { error: error.message });
      }
    });
  });
  await new Promise((resolve) => server.listen(0, '127.0.0.1', resolve));
  return {
    url: `http://127.0.0.1:${server.address().port}`,
    close: () =>
      new Promise((resolve) => {
        redis.close();
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}
