/**
 * The gateway against the embedded aedes broker on a loopback port, with meters on crossed mock serial
 * pairs: ordering, exactly-once delivery, ack-after-PUBACK, broker outages and restarts with a queue.
 */
import { mkdtempSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { AedesPublishPacket, PublishPacket } from 'aedes';
import { Writable } from 'node:stream';
import { pino } from 'pino';
import { afterAll, afterEach, describe, expect, it } from 'vitest';
import { startBroker, type BrokerHandle, type BrokerOptions } from '../../broker/broker.js';
import { buildUsers } from '../../lib/broker-users.js';
import { MockBinding, openCrossedMockPair } from '../../firmware/hal/crossed-mock.js';
import { startGateway, type GatewayHandle, type GatewayOptions } from '../../gateway/gateway.js';
import { topics } from '../../protocol/topics.js';
import { decodeUplink } from '../../protocol/uplink.js';
import { ackReader, freePort, quiet, sleep, testMeter, until, uplinkSubscriber } from './helpers.js';

const dir = mkdtempSync(join(tmpdir(), 'sm-gw-'));
let cleanups: (() => Promise<unknown> | unknown)[] = [];
afterEach(async () => {
  for (const c of cleanups.reverse()) await c();
  cleanups = [];
  MockBinding.reset();
});
afterAll(() => rmSync(dir, { recursive: true, force: true }));

let pathSeq = 0;
async function pair() {
  const n = ++pathSeq;
  const [meterSide, gatewaySide] = await openCrossedMockPair(`/dev/meter-${n}`, `/dev/gw-${n}`);
  cleanups.push(() => Promise.all([meterSide, gatewaySide].map((p) => new Promise((r) => (p.isOpen ? p.close(r) : r(null))))));
  return { meterSide, gatewaySide, acks: ackReader(meterSide) };
}

/** A broker plus a server-side record of every uplink's frames (hex), in the order the broker got them. */
async function broker(opts: BrokerOptions = {}) {
  const frames: string[] = [];
  const published = (packet: AedesPublishPacket, _client: unknown, cb: (err?: Error | null) => void) => {
    if (packet.topic.startsWith('sm/v1/frames/')) for (const f of decodeUplink(packet.payload as Buffer).frames) frames.push(Buffer.from(f).toString('hex'));
    cb();
  };
  const b = await startBroker({ port: 0, logger: quiet, ...opts, aedes: { published, ...opts.aedes } });
  cleanups.push(() => b.close());
  return { b, frames };
}

async function gateway(o: Partial<GatewayOptions> & Pick<GatewayOptions, 'lines' | 'mqtt'>): Promise<GatewayHandle> {
  const gw = await startGateway({ id: 'gw-t', queuePath: ':memory:', logger: quiet, backoff: { minMs: 20, maxMs: 200 }, ...o });
  cleanups.push(() => gw.close());
  return gw;
}

const hex = (b: Buffer) => b.toString('hex');

describe('gateway -> aedes', () => {
  it('delivers every frame exactly once, in queue order, and acks each frame once', async () => {
    const { b } = await broker();
    const sub = await uplinkSubscriber(b.url, topics.frames('gw-t'));
    cleanups.push(() => sub.client.endAsync());
    const lines = [await pair(), await pair()];
    const gw = await gateway({ lines: lines.map((l) => l.gatewaySide), mqtt: { url: b.url }, maxBatch: 64 });
    await until(() => gw.connected, 'the broker connection');

    const meters = [testMeter(1), testMeter(2), testMeter(3)];
    const sent: string[][] = [[], []];
    for (let ic = 1; ic <= 400; ic++) {
      for (const [i, m] of meters.entries()) {
        const line = i === 2 ? 1 : 0; // meters 1 and 2 share line 0, meter 3 is alone on line 1
        lines[line]!.meterSide.write(m.link(ic));
        sent[line]!.push(hex(m.frame(ic)));
      }
      if (ic % 50 === 0) await sleep(5);
    }
    const total = 1200;
    await until(() => sub.frames.length >= total && gw.counters.acksSent >= total, 'all frames and acks', 30_000);
    await sleep(100);

    expect(sub.frames.length).toBe(total);
    expect(new Set(sub.frames).size).toBe(total);
    // Within a line, frames arrive in the order the meter side wrote them.
    for (const s of sent) expect(sub.frames.filter((f) => s.includes(f))).toEqual(s);
    expect(sub.uplinks.every((u) => u.gateway === 'gw-t' && u.count <= 64)).toBe(true);
    expect(sub.uplinks.length).toBeLessThan(total); // batched

    const acks = lines.flatMap((l) => l.acks.acks);
    expect(acks.length).toBe(total);
    expect(new Set(acks).size).toBe(total);
    expect(lines[1]!.acks.acks.every((a) => a.startsWith(meters[2]!.id))).toBe(true);
    const c = gw.counters;
    expect(c).toMatchObject({ framesOk: total, forwarded: total, pending: 0, acksSent: total, linesUp: 2, publishErrors: 0, badCrc: 0 });
  });

  it('writes no ack before the broker PUBACKs the uplink', async () => {
    const parked: (() => void)[] = [];
    const { b } = await broker({
      authorizePublish: (_client, _packet: PublishPacket, cb) => parked.push(() => cb(null)), // aedes sends PUBACK after this
    });
    const l = await pair();
    const gw = await gateway({ lines: [l.gatewaySide], mqtt: { url: b.url } });
    await until(() => gw.connected, 'the broker connection');
    const m = testMeter(7);
    for (let ic = 1; ic <= 5; ic++) l.meterSide.write(m.link(ic));
    await until(() => parked.length >= 1, 'the uplink to reach the broker');
    await sleep(300);
    expect(l.acks.acks).toEqual([]);
    expect(gw.counters).toMatchObject({ framesOk: 5, pending: 5, acksSent: 0, forwarded: 0 });

    for (const release of parked.splice(0)) release();
    await until(() => l.acks.acks.length === 5, 'the acks');
    expect(l.acks.acks).toEqual([1, 2, 3, 4, 5].map((ic) => `${m.id}:${ic}`));
    expect(gw.counters).toMatchObject({ pending: 0, forwarded: 5, acksSent: 5 });
  });

  it('keeps reading and queueing while the broker is down, then delivers everything once it is up', async () => {
    const port = await freePort();
    const l = await pair();
    const queuePath = join(dir, 'down.db');
    const gw = await gateway({ lines: [l.gatewaySide], mqtt: { url: `mqtt://127.0.0.1:${port}` }, queuePath });
    const m = testMeter(9);
    for (let ic = 1; ic <= 30; ic++) l.meterSide.write(m.link(ic));
    await until(() => gw.counters.pending === 30, 'frames to be queued');
    await sleep(300); // several failed connection attempts
    expect(gw.connected).toBe(false);
    expect(l.acks.acks).toEqual([]);
    expect(statSync(queuePath).mode & 0o777).toBe(0o600);

    const { frames } = await broker({ port });
    await until(() => l.acks.acks.length === 30, 'acks after the broker came up');
    expect(frames).toEqual(Array.from({ length: 30 }, (_, i) => hex(m.frame(i + 1))));
    expect(gw.counters).toMatchObject({ forwarded: 30, pending: 0 });
  });

  it('survives a broker restart mid-stream: every frame delivered, each acked exactly once', async () => {
    const port = await freePort();
    const first = await broker({ port });
    const l = await pair();
    const gw = await gateway({ lines: [l.gatewaySide], mqtt: { url: `mqtt://127.0.0.1:${port}` }, maxBatch: 16 });
    await until(() => gw.connected, 'the broker connection');
    const m = testMeter(10);
    for (let ic = 1; ic <= 100; ic++) l.meterSide.write(m.link(ic));
    await until(() => gw.counters.forwarded >= 20, 'some frames forwarded');
    await first.b.close(); // broker gone, uplinks may be in flight
    for (let ic = 101; ic <= 200; ic++) l.meterSide.write(m.link(ic));
    await until(() => gw.counters.framesOk === 200 && !gw.connected, 'the rest to be queued');
    const second = await broker({ port });
    await until(() => l.acks.acks.length === 200, 'every ack', 30_000);

    const all = Array.from({ length: 200 }, (_, i) => hex(m.frame(i + 1)));
    const delivered = new Set([...first.frames, ...second.frames]);
    expect(all.every((f) => delivered.has(f))).toBe(true);
    // Duplicates can only be uplinks that were in flight when the broker went away.
    expect(first.frames.length + second.frames.length - 200).toBeLessThanOrEqual(16 * 16);
    expect(new Set(l.acks.acks).size).toBe(200);
    expect(gw.counters).toMatchObject({ pending: 0, forwarded: 200, acksSent: 200 });
  });

  it('re-publishes, after a restart, what a previous run left in its queue', async () => {
    const port = await freePort();
    const queuePath = join(dir, 'restart.db');
    const m = testMeter(11);
    const first = await pair();
    const gw1 = await startGateway({ id: 'gw-t', lines: [first.gatewaySide], mqtt: { url: `mqtt://127.0.0.1:${port}` }, queuePath, logger: quiet, backoff: { minMs: 20, maxMs: 100 } });
    for (let ic = 1; ic <= 12; ic++) first.meterSide.write(m.link(ic));
    await until(() => gw1.counters.pending === 12, 'frames to be queued');
    await gw1.close();
    expect(first.acks.acks).toEqual([]);

    const { frames } = await broker({ port });
    const second = await pair();
    const gw2 = await gateway({ lines: [second.gatewaySide], mqtt: { url: `mqtt://127.0.0.1:${port}` }, queuePath });
    await until(() => frames.length === 12 && gw2.counters.pending === 0, 'the restored frames');
    expect(frames).toEqual(Array.from({ length: 12 }, (_, i) => hex(m.frame(i + 1))));
    // The meter never got its acks, so it retransmits: acknowledged at once, not published again.
    second.meterSide.write(m.link(3));
    await until(() => second.acks.acks.length === 1, 'the ack of the retransmission');
    expect(second.acks.acks).toEqual([`${m.id}:3`]);
    await sleep(100);
    expect(frames.length).toBe(12);
    expect(gw2.counters.duplicates).toBe(1);
  });

  it('authenticates with its credentials and is confined to its own topic', async () => {
    const names = ['gateway-gw-t', 'gateway-gw-other', 'pes', 'mdms', 'ucs'];
    const users = buildUsers({ gateways: ['gw-t', 'gw-other'], households: [] }, Object.fromEntries(names.map((n) => [n, `pw-${n}`])));
    const { b, frames } = await broker({ users });
    const m = testMeter(12);

    const good = await pair();
    const gw = await gateway({ lines: [good.gatewaySide], mqtt: { url: b.url, username: 'gateway-gw-t', password: 'pw-gateway-gw-t' } });
    good.meterSide.write(m.link(1));
    await until(() => good.acks.acks.length === 1, 'the ack');
    expect(frames).toEqual([hex(m.frame(1))]);

    // Credentials in the URL work too, and the logged URL hides the password (same client id: close the first).
    await gw.close();
    let logged = '';
    const sink = new Writable({ write: (chunk, _e, cb) => ((logged += String(chunk)), cb()) });
    const inUrl = await pair();
    const url = new URL(b.url);
    [url.username, url.password] = ['gateway-gw-t', 'pw-gateway-gw-t'];
    await gateway({ lines: [inUrl.gatewaySide], mqtt: { url: url.toString() }, logger: pino(sink) });
    inUrl.meterSide.write(m.link(4));
    await until(() => inUrl.acks.acks.length === 1, 'the ack via URL credentials');
    expect(logged).toContain('gateway-gw-t:***@');
    expect(logged).not.toContain('pw-gateway-gw-t');

    const bad = await pair();
    const wrong = await gateway({ id: 'gw-other', lines: [bad.gatewaySide], mqtt: { url: b.url, username: 'gateway-gw-other', password: 'nope' } });
    bad.meterSide.write(m.link(2));
    await until(() => b.counters.authFailures >= 2, 'retried refused connections');
    expect(wrong.connected).toBe(false);
    expect(wrong.counters.pending).toBe(1);

    // Credentials of another gateway: connected, but its publishes are refused and nothing is acked.
    const stolen = await pair();
    const mis = await gateway({ id: 'gw-t-x', lines: [stolen.gatewaySide], mqtt: { url: b.url, username: 'gateway-gw-t', password: 'pw-gateway-gw-t' } });
    stolen.meterSide.write(m.link(3));
    await until(() => b.counters.publishDenied >= 1 && mis.counters.publishErrors >= 1, 'a refused publish');
    expect(stolen.acks.acks).toEqual([]);
    expect(frames).toEqual([hex(m.frame(1)), hex(m.frame(4))]);
    expect(gw.counters.forwarded).toBe(1);
  });

  it('validates its options', async () => {
    const l = await pair();
    await expect(startGateway({ id: 'bad id', lines: [l.gatewaySide], mqtt: { url: 'mqtt://127.0.0.1:1' }, queuePath: ':memory:', logger: quiet })).rejects.toThrow(/gateway id/);
    await expect(startGateway({ id: 'g', lines: [], mqtt: { url: 'mqtt://127.0.0.1:1' }, queuePath: ':memory:', logger: quiet })).rejects.toThrow(/serial line/);
    await expect(startGateway({ id: 'g', lines: [l.gatewaySide], mqtt: { url: 'http://x' }, queuePath: ':memory:', logger: quiet })).rejects.toThrow(/--mqtt/);
  });
});
