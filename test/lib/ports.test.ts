/**
 * lib/ports.ts: a taken port fails with one message naming the port, its holder (found in /proc, not guessed)
 * and the flag to pass; preferPort falls back to a free port.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { createServer, type AddressInfo, type Server } from 'node:net';
import Fastify from 'fastify';
import { afterEach, describe, expect, it } from 'vitest';
import { bindPort, listenOn, portHolder, PortError, preferPort } from '../../lib/ports.js';

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
});
