/**
 * MQTT 3.1.1 §4.6 (Ordered Topic) for a client resuming a persistent session: what the broker stored while the
 * client was away comes before what is published while it resumes (broker/broker.ts orderedResume). The live
 * message is published at the worst moment: when aedes has registered the client (its subscriptions restored)
 * but not yet sent the stored queue. Without the hook it arrived first (the crash test's MDMS saw a window's
 * revision 1 before its revision 0 and refused it as a gap).
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import mqtt from 'mqtt';
import { pino } from 'pino';
import { afterAll, describe, expect, it } from 'vitest';
import { startBroker, type BrokerHandle } from '../../broker/broker.js';

const dir = mkdtempSync(join(tmpdir(), 'sm-order-'));
const brokers: BrokerHandle[] = [];
afterAll(async () => {
  await Promise.all(brokers.map((b) => b.close()));
  rmSync(dir, { recursive: true, force: true });
});

async function run(stateFile: string | undefined): Promise<number[]> {
  const broker = await startBroker({ port: 0, logger: pino({ level: 'silent' }), ...(stateFile ? { stateFile } : {}) });
  brokers.push(broker);
  const opts = { clientId: 'mdms', clean: false, protocolVersion: 4 as const, reconnectPeriod: 0 };
  const first = await mqtt.connectAsync(broker.url, opts);
  await first.subscribeAsync('sm/v1/agg/#', { qos: 1 });
  await first.endAsync();
  const pub = await mqtt.connectAsync(broker.url, { clientId: 'pes', protocolVersion: 4, reconnectPeriod: 0 });
  for (let i = 0; i < 40; i++) await pub.publishAsync('sm/v1/agg/neighbourhood/nb1', String(i), { qos: 1 });
  // The moment that used to reorder: the resuming client is registered, its stored queue not yet sent.
  broker.aedes.once('client', () => void pub.publishAsync('sm/v1/agg/neighbourhood/nb1', '40', { qos: 1 }));
  const got: number[] = [];
  const second = mqtt.connect(broker.url, { ...opts, manualConnect: true });
  second.on('message', (_t, payload) => got.push(Number(String(payload))));
  second.connect();
  const deadline = Date.now() + 20_000;
  while (!got.includes(40) || new Set(got).size < 41) {
    if (Date.now() > deadline) throw new Error(`timed out; got ${got.join(',')}`);
    await new Promise((r) => setTimeout(r, 20));
  }
  await second.endAsync();
  await pub.endAsync();
  return got;
}

describe('a resumed persistent session keeps each topic in order (MQTT 3.1.1 §4.6)', () => {
  it.each([['in memory', undefined], ['with the SQLite state file', 'broker.sqlite']])('%s: the stored queue first, then what was published while the client resumed', async (_name, file) => {
    const got = await run(file && join(dir, file));
    const firsts = got.filter((v, i) => got.indexOf(v) === i); // a copy the queue already carried may come twice
    expect(firsts).toEqual(Array.from({ length: 41 }, (_, i) => i));
  });
});
