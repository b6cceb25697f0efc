/**
 * The embedded broker's durable sessions (broker/persistence.ts): aedes-persistence's own conformance
 * suite, and what a restart on the same state file must keep. The kill -9 of the broker process itself is
 * in crash.test.ts.
 */
import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import mqtt, { type MqttClient } from 'mqtt';
import { pino } from 'pino';
import { afterAll, afterEach, describe, expect, it } from 'vitest';
import { startBroker, type BrokerHandle } from '../../broker/broker.js';
import { SqlitePersistence } from '../../broker/persistence.js';

const quiet = pino({ level: 'silent' });
const dir = mkdtempSync(join(tmpdir(), 'sm-broker-state-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));
let cleanups: (() => Promise<unknown>)[] = [];
afterEach(async () => {
  for (const c of cleanups.reverse()) await c();
  cleanups = [];
});

async function broker(stateFile: string): Promise<BrokerHandle> {
  const b = await startBroker({ port: 0, stateFile, logger: quiet });
  cleanups.push(() => b.close());
  return b;
}

async function client(url: string, clientId: string, clean = false): Promise<{ c: MqttClient; got: string[]; sessionPresent: boolean }> {
  const got: string[] = [];
  let sessionPresent = false;
  const c = mqtt.connect(url, { clientId, clean, protocolVersion: 4, reconnectPeriod: 0 });
  c.on('message', (_t, payload) => got.push(String(payload)));
  await new Promise<void>((ok, fail) => {
    c.once('connect', (ack) => {
      sessionPresent = ack.sessionPresent;
      ok();
    });
    c.once('error', fail);
  });
  cleanups.push(() => c.endAsync(true));
  return { c, got, sessionPresent };
}

async function until(check: () => boolean, what: string, ms = 10_000): Promise<void> {
  const t0 = Date.now();
  while (!check()) {
    if (Date.now() - t0 > ms) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

describe('SQLite persistence for aedes', () => {
  it("passes aedes-persistence's conformance suite (abstract.js)", async () => {
    const root = resolve(import.meta.dirname, '../..');
    const child = spawn(process.execPath, ['--import', 'tsx', '--test', 'test/crash/fixtures/persistence-abstract.ts'], { cwd: root, stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    child.stdout.on('data', (d) => (out += String(d)));
    child.stderr.on('data', (d) => (out += String(d)));
    const code = await new Promise<number | null>((r) => child.once('exit', r));
    expect(out).toMatch(/^# fail 0$/m);
    expect(Number(/^# pass (\d+)$/m.exec(out)?.[1])).toBeGreaterThanOrEqual(50);
    expect(code, out.slice(-3000)).toBe(0);
  });

  it('keeps a clean:false session and the QoS 1 messages queued while its client was away across a broker restart', async () => {
    const file = join(dir, 'restart.sqlite');
    const b1 = await broker(file);
    const sub = await client(b1.url, 'consumer');
    await sub.c.subscribeAsync('sm/v1/test/#', { qos: 1 });
    await sub.c.endAsync();
    const pub = await client(b1.url, 'producer', true);
    for (let i = 0; i < 5; i++) await pub.c.publishAsync('sm/v1/test/x', `m${i}`, { qos: 1 });
    await pub.c.endAsync();
    await b1.close();

    const b2 = await broker(file);
    const again = await client(b2.url, 'consumer');
    expect(again.sessionPresent).toBe(true);
    await until(() => again.got.length === 5, 'the queued messages');
    expect(again.got).toEqual(['m0', 'm1', 'm2', 'm3', 'm4']);
    // Acknowledged messages are gone: a third start delivers nothing more.
    await again.c.endAsync();
    await b2.close();
    const b3 = await broker(file);
    const third = await client(b3.url, 'consumer');
    await new Promise((r) => setTimeout(r, 300));
    expect(third.got).toEqual([]);
  });

  it('re-publishes at start-up a message it acknowledged but had not yet enqueued (the publish journal)', async () => {
    const file = join(dir, 'journal.sqlite');
    const b1 = await broker(file);
    const sub = await client(b1.url, 'consumer');
    await sub.c.subscribeAsync('sm/v1/test/#', { qos: 1 });
    await sub.c.endAsync();
    await b1.close();
    // What a kill -9 between aedes's PUBACK and its enqueueing leaves behind: a journal entry only.
    const p = new SqlitePersistence(file);
    await p.journal({ cmd: 'publish', topic: 'sm/v1/test/j', payload: Buffer.from('journaled'), qos: 1, retain: false });
    expect(p.stats().journal).toBe(1);
    await p.destroy();

    const b2 = await broker(file);
    const again = await client(b2.url, 'consumer');
    await until(() => again.got.length === 1, 'the journaled message');
    expect(again.got).toEqual(['journaled']);
    await again.c.endAsync();
    await b2.close();
    const after = new SqlitePersistence(file);
    expect(after.stats()).toMatchObject({ journal: 0, outgoing: 0, subscriptions: 1 });
    await after.destroy();
  });

  it('journals each QoS 1 message until aedes has enqueued it, and nothing else', async () => {
    const file = join(dir, 'clear.sqlite');
    const b = await broker(file);
    const sub = await client(b.url, 'consumer');
    await sub.c.subscribeAsync('sm/v1/test/#', { qos: 1 });
    const pub = await client(b.url, 'producer', true);
    for (let i = 0; i < 20; i++) await pub.c.publishAsync('sm/v1/test/x', `m${i}`, { qos: i % 2 ? 1 : 0 });
    await until(() => sub.got.length === 20, 'every message');
    const p = new SqlitePersistence(file); // a second reader of the same WAL file
    cleanups.push(() => p.destroy());
    await until(() => p.stats().outgoing === 0, 'the subscriber\'s PUBACKs to clear the queue'); // QoS 1 ones only
    expect(p.stats().journal).toBe(0);
  });
});

describe('control: without a state file', () => {
  it('a restarted broker has forgotten the session and the queued message (what the state file is for)', async () => {
    const b1 = await startBroker({ port: 0, logger: quiet });
    cleanups.push(() => b1.close());
    const sub = await client(b1.url, 'consumer');
    await sub.c.subscribeAsync('sm/v1/test/#', { qos: 1 });
    await sub.c.endAsync();
    const pub = await client(b1.url, 'producer', true);
    await pub.c.publishAsync('sm/v1/test/x', 'queued', { qos: 1 });
    await pub.c.endAsync();
    await b1.close();
    const b2 = await startBroker({ port: 0, logger: quiet });
    cleanups.push(() => b2.close());
    const again = await client(b2.url, 'consumer');
    expect(again.sessionPresent).toBe(false);
    await new Promise((r) => setTimeout(r, 300));
    expect(again.got).toEqual([]);
  });
});
