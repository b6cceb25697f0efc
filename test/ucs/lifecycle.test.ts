/**
 * The UCS server's life cycle against its broker: a broker that answers only after the server was closed
 * must not make the server touch its closed database (an uncaught exception in the process).
 */
import { createServer, type Socket } from 'node:net';
import type { AddressInfo } from 'node:net';
import { join } from 'node:path';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { startUcs } from '../../ucs/server.js';
import { makeKeySet, memoryLogger, waitFor, type KeySet } from './helpers.js';

let set: KeySet;
beforeAll(async () => {
  set = await makeKeySet();
});
afterAll(() => set?.cleanup());

it('a CONNACK that arrives after close() is ignored', async () => {
  const sockets: Socket[] = [];
  const broker = createServer((s) => {
    s.on('error', () => undefined);
    sockets.push(s);
  });
  await new Promise<void>((r) => broker.listen(0, '127.0.0.1', () => r()));
  const uncaught: unknown[] = [];
  const onUncaught = (e: unknown) => uncaught.push(e);
  process.on('uncaughtException', onUncaught);
  try {
    const mem = memoryLogger();
    const ucs = await startUcs({ keysDir: set.keys, dbPath: join(set.dir, 'ucs.sqlite'), brokerUrl: `mqtt://127.0.0.1:${(broker.address() as AddressInfo).port}`, brokerWsUrl: 'ws://127.0.0.1:1', logger: mem.logger });
    await waitFor(() => sockets.length === 1, 'the server connecting to the broker');
    const closed = ucs.close();
    sockets[0]!.write(Buffer.from([0x20, 0x02, 0x00, 0x00])); // CONNACK, accepted
    await closed;
    await new Promise((r) => setTimeout(r, 300));
    expect(uncaught).toEqual([]);
  } finally {
    process.off('uncaughtException', onUncaught);
    for (const s of sockets) s.destroy();
    await new Promise<void>((r) => broker.close(() => r()));
  }
});
