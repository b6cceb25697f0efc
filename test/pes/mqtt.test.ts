import { afterEach, describe, expect, it } from 'vitest';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import mqtt, { type MqttClient } from 'mqtt';
import { pino } from 'pino';
import { startBroker, type BrokerHandle } from '../../broker/broker.js';
import { openAggregate } from '../../protocol/seal.js';
import { topics } from '../../protocol/topics.js';
import { startPesService } from '../../pes/mqtt.js';
import type { BillingAggregate } from '../../protocol/aggregate.js';
import { makeFleet, uplink } from './helpers.js';

const log = pino({ level: 'silent' });
const T0 = 1_700_000_000 - (1_700_000_000 % 86400);
const cleanup: (() => Promise<void> | void)[] = [];
afterEach(async () => {
  for (const c of cleanup.splice(0).reverse()) await c();
});

async function until(pred: () => boolean, what: string, timeoutMs = 15_000): Promise<void> {
  const t0 = Date.now();
  while (!pred()) {
    if (Date.now() - t0 > timeoutMs) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

async function connect(url: string, clientId: string): Promise<MqttClient> {
  const c = await mqtt.connectAsync(url, { clientId, clean: true, protocolVersion: 4, reconnectPeriod: 0 });
  cleanup.push(() => c.endAsync(true));
  return c;
}

describe('PES over MQTT', () => {
  it('acknowledges an uplink only after its effect is committed: killed before the commit, it gets the message again and counts it once', async () => {
    const broker: BrokerHandle = await startBroker({ port: 0, logger: log });
    cleanup.push(() => broker.close());
    const dir = mkdtempSync(join(tmpdir(), 'pes-mqtt-'));
    cleanup.push(() => rmSync(dir, { recursive: true, force: true }));
    const f = await makeFleet({ n: 2, start: T0 });
    const stateFile = join(dir, 'pes.db');
    const base = { keys: f.keys, stateFile, intervalS: 900, latenessS: 60, k: 1, logger: log, mqtt: { url: broker.url, reconnectPeriod: 200 } };

    // The MDMS side: every sealed aggregate.
    const mdms = await connect(broker.url, 'mdms-test');
    const aggregates: { topic: string; payload: Buffer }[] = [];
    mdms.on('message', (topic, payload) => aggregates.push({ topic, payload }));
    await mdms.subscribeAsync(topics.aggregatesAll, { qos: 1 });

    let seen = 0;
    let svc = startPesService({
      ...base,
      hooks: {
        beforeCommit: () => {
          seen++;
          throw new Error('crash before commit');
        },
      },
    });
    await svc.ready;
    const killed = svc;
    // The process dies a little after the failure: long enough for a PUBACK, had one been sent, to reach
    // the broker.
    void killed.failed.then(() => new Promise((r) => setTimeout(r, 300))).then(() => killed.kill());

    const gw = await connect(broker.url, 'gw-test');
    const [a, b] = f.meters;
    const first = uplink([a!.frame(a!.batch(15)), b!.frame(b!.batch(15))]);
    await gw.publishAsync(topics.frames('gw-nb0'), first, { qos: 1 });
    await until(() => seen === 1, 'the first PES to receive the uplink');
    await until(() => !killed.client.connected, 'the first PES to die');
    expect(killed.pes.counters.framesOk).toBe(2); // processed in memory, then lost with the process

    // A new PES on the same state file and client id: the broker still holds the unacknowledged message.
    svc = startPesService(base);
    cleanup.push(() => svc.close());
    await until(() => svc.pes.counters.framesOk === 2, 'the redelivered uplink');
    // A second uplink, after it in the same session: if the first had not been acknowledged now, the next
    // start would see it again before this one.
    await gw.publishAsync(topics.frames('gw-nb0'), uplink([a!.frame(a!.batch(15)), b!.frame(b!.batch(15))]), { qos: 1 });
    await until(() => svc.pes.counters.framesOk === 4, 'the second uplink');
    await svc.close();

    svc = startPesService(base);
    await svc.ready;
    expect(svc.pes.counters.framesOk).toBe(4); // from the state file
    await gw.publishAsync(topics.frames('gw-nb0'), uplink([a!.frame(a!.batch(15))]), { qos: 1 });
    await until(() => svc.pes.counters.framesOk === 5, 'the marker uplink');
    expect(svc.pes.counters.readings).toBe(75);
    expect(svc.pes.counters.replay).toBe(0);

    // Release: aggregates reach the MDMS sealed, at QoS 1, and count each reading once.
    svc.pes.flush();
    await until(() => aggregates.some((m) => m.topic === topics.billing('hh0')), 'the billing aggregate');
    await svc.pes.idle();
    const bill = openAggregate(f.mdms, topics.billing('hh0'), aggregates.find((m) => m.topic === topics.billing('hh0'))!.payload, f.pesVerify) as BillingAggregate;
    expect(bill.bands.flat).toBe(a!.register - a!.registers[0]!);
    expect(bill.bands.flat).toBe(45 * 100);
  });

  it('subscribes again when a restarted broker has lost its session', async () => {
    const first = await startBroker({ port: 0, logger: log });
    const port = first.port;
    const f = await makeFleet({ n: 1, start: T0 });
    const svc = startPesService({ keys: f.keys, k: 1, logger: log, mqtt: { url: first.url, clientId: 'pes-resub', reconnectPeriod: 100 } });
    cleanup.push(() => svc.close());
    await svc.ready;
    await first.close();
    const second = await startBroker({ port, logger: log }); // in-memory: no session, no subscriptions
    cleanup.push(() => second.close());
    let resubscribed = false;
    second.aedes.on('subscribe', (subs, client) => {
      if (client?.id === 'pes-resub' && subs.some((x) => x.topic === topics.framesAll)) resubscribed = true;
    });
    await until(() => resubscribed, 'the PES to subscribe again');
    const gw = await connect(second.url, 'gw-resub');
    const m = f.meters[0]!;
    await gw.publishAsync(topics.frames('gw-nb0'), uplink([m.frame(m.batch(3))]), { qos: 1 });
    await until(() => svc.pes.counters.framesOk === 1, 'the uplink through the new broker');
  });

  it('reports the broker refusing its subscriptions', async () => {
    const broker = await startBroker({
      port: 0,
      logger: log,
      authorizeSubscribe: (_client, sub, cb) => cb(null, sub.topic === topics.framesAll ? sub : null),
    });
    cleanup.push(() => broker.close());
    const f = await makeFleet({ n: 1, start: T0 });
    const svc = startPesService({ keys: f.keys, k: 1, logger: log, mqtt: { url: broker.url, clientId: 'pes-refused' } });
    cleanup.push(() => svc.close());
    await expect(svc.ready).rejects.toThrow(/refused the PES's subscription/);
  });
});
