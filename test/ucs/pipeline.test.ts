/**
 * The household path through the real services over MQTT: the UCS server publishes the key the household
 * registered with; the PES service (pes/mqtt.ts) picks it up from the retained topic and seals the meter's
 * readings, sent by the gateway user as ciphered frames, to it; the UCS server archives the ciphertext; the
 * household opens it with the browser's opener — and gets exactly the meter's readings.
 */
import mqtt from 'mqtt';
import { pino } from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { encodeFrame, SC_AES256GCM, sealFrame } from '../../protocol/frame.js';
import { encodeReadingBatch } from '../../protocol/reading.js';
import { topics } from '../../protocol/topics.js';
import { encodeUplink } from '../../protocol/uplink.js';
import { startPesService, type PesService } from '../../pes/mqtt.js';
import { loadCredentials, loadMeterKey, loadPesKeys } from '../../lib/keyset.js';
import { parseStreamBody } from '../../protocol/stream.js';
import { bodyRows } from '../../ucs/web/body.js';
import { fromB64u } from '../../ucs/web/bytes.js';
import { importPrivateKey, keyIdOf } from '../../ucs/web/keys.js';
import { StreamOpener } from '../../ucs/web/seal.js';
import { NodeHousehold, sourceBatches, startStack, waitFor, webPesKey, type Stack } from './helpers.js';

let stack: Stack;
let pes: PesService;

beforeAll(async () => {
  stack = await startStack();
  const keys = loadPesKeys(stack.set.keys);
  const meters = new Map(stack.set.fleet.meters.map((m) => [m.meter, { key: keys.meterKeys.get(m.meter)!, household: m.household, neighbourhood: m.neighbourhood }]));
  pes = startPesService({
    keys: { rsa: keys.rsa, signer: keys.signer, paillier: keys.paillier, mdmsPublic: keys.mdmsPublic, bindingKeys: keys.bindingKeys, meters },
    k: 1,
    logger: pino({ level: 'silent' }),
    mqtt: { url: stack.broker.url, ...loadCredentials(stack.set.keys, 'pes') },
  });
  await pes.ready;
});
afterAll(async () => {
  await pes?.close();
  await stack?.close();
});

describe('UCS -> PES -> household over MQTT', () => {
  it('streams the meter’s readings sealed to the key registered in the app, and only after registration', async () => {
    const meter = stack.set.fleet.meters.find((m) => m.household === 'hh1')!;
    const batches = sourceBatches(11, Math.floor(Date.now() / 60_000) * 60 - 3600, 60, 15, 42_000_000);
    const gw = await mqtt.connectAsync(stack.broker.url, { ...loadCredentials(stack.set.keys, `gateway-${meter.gateway}`), clientId: `gateway-${meter.gateway}-test`, reconnectPeriod: 0 });
    let ic = 1;
    const send = (i: number) => {
      const frame = encodeFrame(sealFrame(loadMeterKey(stack.set.keys, meter.meter), { systemTitle: Buffer.from(meter.meter, 'hex'), sc: SC_AES256GCM, ic: ic++ }, encodeReadingBatch(batches[i]!)));
      return gw.publishAsync(topics.frames(meter.gateway), encodeUplink({ gateway: meter.gateway, frames: [frame] }), { qos: 1 });
    };
    try {
      await send(0); // before the household registered: the PES has no key, nothing is streamed
      await waitFor(() => pes.pes.counters.noHouseholdKey === 1, 'frame without a household key');

      const hh = new NodeHousehold(stack.ucs.url, 'hh1');
      const reg = await hh.register(stack.set.code('hh1'), 'a long enough passphrase');
      expect(reg.json).toEqual({ household: 'hh1', keyPublished: true });
      await waitFor(() => pes.pes.counters.householdKeys === 1, 'the PES took the key');
      for (let i = 1; i < batches.length; i++) await send(i);
      await waitFor(() => stack.ucs.link.counters.archived === batches.length - 1, 'archived streams');

      const opener = new StreamOpener(await importPrivateKey(reg.pkcs8!), await keyIdOf(reg.spki!), await webPesKey(stack.set.keys));
      const items = (await hh.call('GET', '/api/archive')).json.items as [number, string][];
      const rows = [];
      for (const [, p] of items) rows.push(...bodyRows(parseStreamBody(await opener.open(topics.household('hh1'), fromB64u(p, 'payload')))));
      expect(rows).toEqual(batches.slice(1).flatMap((b) => bodyRows({ meter: meter.meter, ...b })));
      expect(opener.unwraps).toBeLessThanOrEqual(2); // one per UTC day of the series
    } finally {
      await gw.endAsync();
    }
  });
});
