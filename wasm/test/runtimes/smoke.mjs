// Run by Deno and Bun: the built package locks real Redis through the RESP executor.
// Prints one JSON line with what it saw.
// Usage: smoke.mjs PACKAGE_ENTRY_URL PORT,PORT,PORT (the entry: node.mjs, or web.mjs under Deno)

const [entry, portList] = (globalThis.Deno ? Deno.args : process.argv.slice(2));
const { Redlock, respExecutor } = await import(entry);

async function connectTo(port) {
  if (globalThis.Deno) return Deno.connect({ hostname: '127.0.0.1', port });
  const net = await import('node:net');
  const { Duplex } = await import('node:stream');
  const socket = net.connect(port, '127.0.0.1');
  return { ...Duplex.toWeb(socket), close: () => socket.destroy() };
}

const executors = portList.split(',').map(Number).map((port) => respExecutor({ connect: () => connectTo(port) }));
try {
  const redlock = new Redlock(executors, { retryCount: 0, requestTimeout: 1000 });
  const lock = await redlock.acquire(['runtime:a', 'runtime:b'], 5000);
  const refused = await redlock.acquire('runtime:b', 5000).catch((error) => error);
  await lock.extend(6000);
  const released = await lock.release();
  console.log(
    JSON.stringify({ value: lock.value, refused: refused.code, extensions: lock.extensions, clean: released.clean }),
  );
} finally {
  for (const executor of executors) executor.close();
}
