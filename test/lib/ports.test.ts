/**
 * lib/ports.ts: a taken port fails with one message naming the port, its holder (found in /proc, not guessed)
 * and the flag to pass; preferPort falls back to a free port.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { connect, createServer, type AddressInfo, type Server } from 'node:net';
import { Readable } from 'node:stream';
import Fastify from 'fastify';
import { afterEach, describe, expect, it } from 'vitest';
import { bindPort, closeWithin, listenOn, portHolder, PortError, preferPort } from '../../lib/ports.js';

const cleanups: (() => Promise<unknown> | void)[] = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});

async function holdPort(): Promise<{ server: Server; port: number }> {
  const server = createServer();
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', () => r()));
  cleanups.push(() => new Promise((r) => server.close(r)));
  return { server, port: (server.address() as AddressInfo).port };
}

/** A child process that holds a port, so the holder is another process with a recognisable command line. */
async function childHolding(): Promise<{ child: ChildProcess; port: number }> {
  const code = "/*port-holder-marker*/const s=require('net').createServer();s.listen(0,'127.0.0.1',()=>console.log(s.address().port));setInterval(()=>{},1e5)";
  const child = spawn(process.execPath, ['-e', code], { stdio: ['ignore', 'pipe', 'inherit'] });
  cleanups.push(() => void child.kill());
  const port = await new Promise<number>((resolve) => child.stdout!.once('data', (d) => resolve(Number(String(d).trim()))));
  return { child, port };
}

describe('lib/ports', () => {
  it.runIf(process.platform === 'linux')('names the process that holds a port', async () => {
    const { child, port } = await childHolding();
    const holder = portHolder(port);
    expect(holder).toMatch(new RegExp(`^pid ${child.pid}: .*port-holder-marker`));
    const { port: own } = await holdPort();
    expect(portHolder(own)).toBe('this very process');
  });

  it('a taken port: the port, its holder and the flag in one message', async () => {
    const { port } = await childHolding();
    const err = await listenOn(createServer(), { port, what: 'the MQTT broker', flag: '--port' }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(PortError);
    expect((err as PortError).code).toBe('EADDRINUSE');
    const msg = (err as Error).message;
    expect(msg).toMatch(new RegExp(`^port ${port} is in use \\(`));
    if (process.platform === 'linux') expect(msg).toContain('port-holder-marker');
    expect(msg).toContain('so the MQTT broker cannot listen there: pass --port <port> for another port (0: any free port)');
    expect(msg).not.toContain('Mosquitto');
  });

  it('wraps fastify listen the same way, and passes other errors through', async () => {
    const { port } = await holdPort();
    const app = Fastify();
    cleanups.push(() => app.close());
    await expect(bindPort({ port, what: 'the MDMS web app', flag: '--http' }, () => app.listen({ port, host: '127.0.0.1' }))).rejects.toThrow(
      `port ${port} is in use (this very process), so the MDMS web app cannot listen there: pass --http <port>`,
    );
    await expect(bindPort({ port, what: 'x', flag: '--x' }, () => Promise.reject(new TypeError('not a port problem')))).rejects.toThrow(TypeError);
  });

  it('listenOn resolves the bound port; preferPort takes the preferred one if free, else another', async () => {
    const s = createServer();
    cleanups.push(() => new Promise((r) => s.close(r)));
    const got = await listenOn(s, { port: 0, what: 'test', flag: '--port' });
    expect(got).toBe((s.address() as AddressInfo).port);
    const { port } = await holdPort();
    const busy = await preferPort(port);
    expect(busy.preferred).toBe(false);
    expect(busy.port).not.toBe(port);
    if (process.platform === 'linux') expect(busy.holder).toBe('this very process');
    const freed = busy.port; // was free a moment ago, and nobody holds it now
    expect(await preferPort(freed)).toEqual({ port: freed, preferred: true });
  });

  it('closes a web app within the grace time although a client stopped reading its answer', async () => {
    const app = Fastify();
    // A streamed answer (as @fastify/static sends files) far larger than the socket buffers hold.
    app.get('/big', (_req, reply) => reply.send(Readable.from((function* () { for (let i = 0; i < 512; i++) yield Buffer.alloc(64 << 10, 120); })())));
    await app.listen({ port: 0, host: '127.0.0.1' });
    const { port } = app.server.address() as AddressInfo;
    const client = connect(port, '127.0.0.1');
    cleanups.push(() => void client.destroy());
    client.pause(); // reads nothing: the answer stays in flight
    client.write('GET /big HTTP/1.1\r\nHost: x\r\n\r\n');
    await new Promise((r) => setTimeout(r, 300)); // the handler has answered, the bytes wait on the client
    const ended = new Promise<void>((r) => client.once('close', () => r()));
    const t0 = Date.now();
    await closeWithin(app, 500);
    const took = Date.now() - t0;
    expect(took).toBeGreaterThanOrEqual(450); // it did wait for the request in flight
    expect(took).toBeLessThan(2_000); // and then ended it (Fastify's own close waits for the 72 s keep-alive timeout)
    client.destroy();
    await ended;
  });
});
