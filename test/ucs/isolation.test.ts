/**
 * One household cannot read another's stream: the broker refuses the subscription (over TCP and over the
 * WebSocket the browser uses), and whoever gets the raw messages anyway (a forged subscription, the broker
 * operator, the UCS archive) holds ciphertext that another household's key cannot open.
 */
import { createPublicKey } from 'node:crypto';
import mqtt from 'mqtt';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { cborDecode, cborEncode } from '../../protocol/cbor.js';
import type { ReadingBatch } from '../../protocol/reading.js';
import { topics } from '../../protocol/topics.js';
import { loadCredentials } from '../../lib/keyset.js';
import { keyIdOf, importPrivateKey } from '../../ucs/web/keys.js';
import { OpenError, StreamOpener } from '../../ucs/web/seal.js';
import { FakePes, NodeHousehold, prosumerBatches, startStack, waitFor, webPesKey, type Stack } from './helpers.js';

let stack: Stack;
const keys: Record<string, { spki: Uint8Array; pkcs8: Uint8Array }> = {};
const clients: mqtt.MqttClient[] = [];

beforeAll(async () => {
  stack = await startStack();
  for (const hh of ['hh1', 'hh2']) {
    const r = await new NodeHousehold(stack.ucs.url, hh).register(stack.set.code(hh), 'a long enough passphrase');
    expect(r.status).toBe(200);
    keys[hh] = { spki: r.spki!, pkcs8: r.pkcs8! };
  }
});
afterAll(async () => {
  await Promise.all(clients.map((c) => c.endAsync(true)));
  await stack?.close();
});

async function as(user: string, url: string): Promise<mqtt.MqttClient> {
  const c = await mqtt.connectAsync(url, { ...loadCredentials(stack.set.keys, user), clientId: `${user}-probe-${Math.random().toString(36).slice(2)}`, reconnectPeriod: 0 });
  clients.push(c);
  return c;
}

/** SUBACK return codes (mqtt.js rejects with the SUBACK packet when a code is 0x80). */
async function grants(c: mqtt.MqttClient, filter: string): Promise<number[]> {
  try {
    return (await c.subscribeAsync(filter, { qos: 1 })).map((g) => g.qos);
  } catch (e) {
    const granted = (e as { packet?: { granted?: number[] } }).packet?.granted;
    if (!granted) throw e;
    return granted;
  }
}

describe('the broker keeps households apart', () => {
  it('refuses household hh2 the topic of hh1, over TCP and over WebSocket, and grants it its own', async () => {
    for (const url of [stack.broker.url, stack.broker.wsUrl!]) {
      const c = await as('household-hh2', url);
      expect(await grants(c, topics.household('hh1'))).toEqual([128]);
      expect(await grants(c, topics.householdAll('hh1'))).toEqual([128]);
      expect(await grants(c, topics.householdStreamsAll)).toEqual([128]);
      expect(await grants(c, '#')).toEqual([128]);
      expect(await grants(c, topics.household('hh2'))).toEqual([1]);
    }
    expect(stack.broker.counters.subscribeDenied).toBeGreaterThanOrEqual(8);
  });

  it('refuses a client id that impersonates another user (no taking over the ucs or pes session)', async () => {
    await expect(mqtt.connectAsync(stack.broker.url, { ...loadCredentials(stack.set.keys, 'household-hh2'), clientId: 'ucs', reconnectPeriod: 0 })).rejects.toThrow();
  });
});

describe('a raw copy of hh1’s stream is ciphertext to everyone but hh1', () => {
  let batches: ReadingBatch[];
  const raw: Buffer[] = [];

  beforeAll(async () => {
    // A forged subscription: the broker operator taps every household stream server-side.
    await new Promise<void>((resolve) =>
      stack.broker.aedes.subscribe(
        topics.householdStreamsAll,
        (packet, cb) => {
          raw.push(packet.payload as Buffer);
          cb();
        },
        resolve,
      ),
    );
    batches = prosumerBatches(11, 1_717_372_800, 60, 15, 876_543_210, 765_432_109, () => true); // both registers
    const pes = await FakePes.connect(stack.broker.url, stack.set.keys);
    const pub = createPublicKey({ key: Buffer.from(keys.hh1!.spki), format: 'der', type: 'spki' });
    for (const b of batches) await pes.publish('hh1', pub, stack.set.fleet.meters[0]!.meter, b);
    await pes.close();
    await waitFor(() => raw.length === batches.length, 'tapped messages');
  });

  it('holds no reading value', () => {
    for (const p of raw) {
      for (const b of batches) {
        for (const r of b.readings) {
          expect(p.includes(cborEncode(r.importWh))).toBe(false);
          expect(p.includes(Buffer.from(String(r.importWh)))).toBe(false);
          expect(p.includes(cborEncode(r.exportWh))).toBe(false);
          expect(p.includes(Buffer.from(String(r.exportWh)))).toBe(false);
        }
      }
    }
  });

  it('does not open with hh2’s key, even with the key id forged to hh2’s', async () => {
    const opener2 = new StreamOpener(await importPrivateKey(keys.hh2!.pkcs8), await keyIdOf(keys.hh2!.spki), await webPesKey(stack.set.keys));
    const reasonOf = async (p: Uint8Array) => {
      try {
        await opener2.open(topics.household('hh1'), p);
        return 'opened';
      } catch (e) {
        return (e as OpenError).reason;
      }
    };
    for (const p of raw) expect(await reasonOf(p)).toBe('otherKey');
    const forged = cborDecode(raw[0]!) as unknown[];
    forged[1] = await keyIdOf(keys.hh2!.spki);
    expect(await reasonOf(cborEncode(forged))).toBe('tampered');
    // On hh2's own topic too (the AAD binds the topic and kid, the RSA wrap binds the key).
    const opener2own = new StreamOpener(await importPrivateKey(keys.hh2!.pkcs8), await keyIdOf(keys.hh2!.spki), await webPesKey(stack.set.keys));
    await expect(opener2own.open(topics.household('hh2'), cborEncode(forged))).rejects.toBeInstanceOf(OpenError);
  });

  it('opens with hh1’s key to exactly the source readings', async () => {
    const opener1 = new StreamOpener(await importPrivateKey(keys.hh1!.pkcs8), await keyIdOf(keys.hh1!.spki), await webPesKey(stack.set.keys));
    const bodies = [];
    for (const p of raw) bodies.push(await opener1.open(topics.household('hh1'), p));
    expect(bodies.map((b) => (b as { readings: number[][] }).readings)).toEqual(batches.map((b) => b.readings.map((r) => [r.time, r.period, r.importWh, r.powerW, r.status, r.exportWh])));
    expect(bodies.map((b) => (b as { prevExportWh: number }).prevExportWh)).toEqual(batches.map((b) => b.prevExportWh));
    expect(opener1.unwraps).toBe(1);
  });
});
