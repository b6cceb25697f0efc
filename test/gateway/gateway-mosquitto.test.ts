/**
 * The gateway against an external broker: Mosquitto at 127.0.0.1:1883 (anonymous on this machine).
 * Skipped when Mosquitto is unreachable, except under CI=true where that is a failure.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { reachable } from '../../bench/harness/crash/probes.js';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import mqtt from 'mqtt';
import { afterAll, afterEach, describe, expect, it } from 'vitest';
import { MockBinding, openCrossedMockPair } from '../../firmware/hal/crossed-mock.js';
import { startGateway, type GatewayHandle } from '../../gateway/gateway.js';
import { topics } from '../../protocol/topics.js';
import { ackReader, freePort, quiet, sleep, testMeter, until, uplinkSubscriber } from './helpers.js';

const URL = 'mqtt://127.0.0.1:1883';
const mosquittoUp = await reachable('127.0.0.1', 1883);
const inCi = process.env.CI === 'true';

const dir = mkdtempSync(join(tmpdir(), 'sm-gw-mosq-'));
const run = `${process.pid}-${Date.now().toString(36)}`;
const ids: string[] = [];
let cleanups: (() => Promise<unknown> | unknown)[] = [];
afterEach(async () => {
  for (const c of cleanups.reverse()) await c();
  cleanups = [];
  MockBinding.reset();
});
afterAll(async () => {
  rmSync(dir, { recursive: true, force: true });
  // Remove the persistent sessions our gateways left in Mosquitto: connect once with clean = true.
  if (mosquittoUp) for (const id of ids) await (await mqtt.connectAsync(URL, { clientId: `gateway-${id}`, clean: true, reconnectPeriod: 0 })).endAsync();
});

function gatewayId(name: string): string {
  const id = `gw-test-${run}-${name}`;
  ids.push(id);
  return id;
}

async function pair(n: string) {
  const [meterSide, gatewaySide] = await openCrossedMockPair(`/dev/meter-${n}`, `/dev/gw-${n}`);
  cleanups.push(() => Promise.all([meterSide, gatewaySide].map((p) => new Promise((r) => (p.isOpen ? p.close(r) : r(null))))));
  return { meterSide, gatewaySide, acks: ackReader(meterSide) };
}

describe.skipIf(!mosquittoUp && !inCi)('gateway -> Mosquitto at 127.0.0.1:1883', () => {
  it('Mosquitto is reachable (required when CI=true)', () => {
    expect(mosquittoUp, 'Mosquitto must listen on 127.0.0.1:1883 when CI=true').toBe(true);
  });

  it('delivers every frame exactly once, in order, and acks each after PUBACK', async () => {
    const id = gatewayId('order');
    const sub = await uplinkSubscriber(URL, topics.frames(id));
    cleanups.push(() => sub.client.endAsync());
    const l = await pair('order');
    const gw: GatewayHandle = await startGateway({ id, lines: [l.gatewaySide], mqtt: { url: URL }, queuePath: ':memory:', logger: quiet, maxBatch: 50 });
    cleanups.push(() => gw.close());
    const meters = [testMeter(21), testMeter(22)];
    const sent: string[] = [];
    for (let ic = 1; ic <= 300; ic++) {
      for (const m of meters) {
        l.meterSide.write(m.link(ic));
        sent.push(m.frame(ic).toString('hex'));
      }
      if (ic % 50 === 0) await sleep(5);
    }
    await until(() => sub.frames.length >= sent.length && l.acks.acks.length >= sent.length, 'all frames and acks', 30_000);
    await sleep(100);
    expect(sub.frames).toEqual(sent);
    expect(new Set(l.acks.acks).size).toBe(sent.length);
    expect(l.acks.acks.length).toBe(sent.length);
    expect(gw.counters).toMatchObject({ forwarded: sent.length, pending: 0, publishErrors: 0 });
  });

  it('re-publishes the queue of a previous run that could not reach the broker', async () => {
    const id = gatewayId('restart');
    const queuePath = join(dir, 'restart.db');
    const m = testMeter(23);
    const first = await pair('restart-1');
    const down = `mqtt://127.0.0.1:${await freePort()}`;
    const gw1 = await startGateway({ id, lines: [first.gatewaySide], mqtt: { url: down }, queuePath, logger: quiet, backoff: { minMs: 20, maxMs: 100 } });
    for (let ic = 1; ic <= 8; ic++) first.meterSide.write(m.link(ic));
    await until(() => gw1.counters.pending === 8, 'frames to be queued');
    await gw1.close();

    const sub = await uplinkSubscriber(URL, topics.frames(id));
    cleanups.push(() => sub.client.endAsync());
    const second = await pair('restart-2');
    const gw2 = await startGateway({ id, lines: [second.gatewaySide], mqtt: { url: URL }, queuePath, logger: quiet });
    cleanups.push(() => gw2.close());
    await until(() => sub.frames.length === 8 && gw2.counters.pending === 0, 'the restored frames');
    expect(sub.frames).toEqual(Array.from({ length: 8 }, (_, i) => m.frame(i + 1).toString('hex')));
  });
});
