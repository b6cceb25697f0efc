// pes/e2e.ts + lib/e2e-windows.ts: the blind PES forwards each frame's meter-sealed household stream message
// unchanged on the household's topic (it holds no key that opens it), once per frame (a replayed frame is not
// forwarded again), and refuses to forward a message whose envelope names another meter or frame than the one
// that carried it (meter A's message inside meter B's frame). A message the PES moves to another household or
// relabels does not open there.
import { generateKeyPairSync, randomBytes } from 'node:crypto';
import { beforeAll, describe, expect, it } from 'vitest';
import { E2eEncoder } from '../../firmware/e2e.js';
import { parseBillingPeriod } from '../../lib/billing-period.js';
import type { BlindMeter, BlindSettings } from '../../lib/e2e-windows.js';
import { FLAT_TARIFF } from '../../lib/tariff.js';
import { PesE2e } from '../../pes/e2e.js';
import { decodeE2ePayload, encodeE2ePayload } from '../../protocol/e2e.js';
import { decodeFrame, encodeFrame, openFrame, SC_AES256GCM, sealFrame } from '../../protocol/frame.js';
import { meterStreamKeySync } from '../../protocol/household-key.js';
import { openMeterStream } from '../../protocol/meter-seal.js';
import { generatePaillier, splitKey, type PrivateKey } from '../../protocol/paillier/engine.js';
import type { Reading } from '../../protocol/reading.js';
import { parseStreamBody, streamBody } from '../../protocol/stream.js';
import { topics } from '../../protocol/topics.js';
import { encodeUplink } from '../../protocol/uplink.js';

const T0 = 1_704_067_200;
const A = '534d520000000001';
const B = '534d520000000002';
const settings: BlindSettings = { intervalS: 3600, billing: parseBillingPeriod('1d'), tz: 'UTC', tariff: FLAT_TARIFF, latenessS: 1800, k: 2, revisionK: 2 };
const streamKey: Record<string, Uint8Array> & { hh1: Uint8Array; hh2: Uint8Array } = { hh1: meterStreamKeySync('AAAA-BBBB-CCCC', 'hh1'), hh2: meterStreamKeySync('DDDD-EEEE-FFFF', 'hh2') };
const meterKey: Record<string, Buffer> = { [A]: randomBytes(32), [B]: randomBytes(32) };
const household: Record<string, string> = { [A]: 'hh1', [B]: 'hh2' };
let key: PrivateKey;
let pes: PesE2e;
const encoders = new Map<string, E2eEncoder>();

const batch = (i: number): { prevWh: number; readings: Reading[] } => ({
  prevWh: 1000 + i * 30,
  readings: [0, 1, 2].map((j) => ({ time: T0 + (i * 3 + j) * 60, period: 60, importWh: 1000 + i * 30 + (j + 1) * 10, powerW: 600, status: 0 })),
});
/** Meter `id`'s frame `ic`, carrying `plaintext` (default: its encoder's payload of batch `ic`). */
const frame = (id: string, ic: number, plaintext = encoders.get(id)!.encode(batch(ic), ic)) => encodeFrame(sealFrame(meterKey[id]!, { systemTitle: Buffer.from(id, 'hex'), sc: SC_AES256GCM, ic }, plaintext));
const uplink = (...frames: Buffer[]) => encodeUplink({ gateway: 'gw-nb1', frames });
const streamOf = (f: Buffer, id: string) => decodeE2ePayload(key, openFrame(meterKey[id]!, decodeFrame(f))).stream!;

beforeAll(async () => {
  key = await generatePaillier(512);
  const meters = new Map<string, BlindMeter>([A, B].map((id) => [id, { key: meterKey[id]!, household: household[id]!, neighbourhood: 'nb1' }]));
  const mdms = generateKeyPairSync('rsa', { modulusLength: 2048 });
  pes = new PesE2e(settings, { share: splitKey(key).pes, mdmsPublic: mdms.publicKey, signer: generateKeyPairSync('ed25519').privateKey, meters });
  for (const id of [A, B]) encoders.set(id, new E2eEncoder(key, { intervalS: 3600, tariff: FLAT_TARIFF, stream: { key: streamKey[household[id]!]!, systemTitle: Buffer.from(id, 'hex'), household: household[id]! } }));
});

describe('blind PES: the household stream', () => {
  it("forwards each frame's meter-sealed message unchanged on its household's topic, once", () => {
    const fa = frame(A, 1);
    const fb = frame(B, 1);
    pes.ingestUplink(uplink(fa, fb), 'gw-nb1');
    pes.ingestUplink(uplink(fa), 'gw-nb1'); // a redelivery: the same frame again
    const out = pes.takeOutbox().filter((m) => m.topic.startsWith('sm/v1/household/'));
    expect(out.map((m) => m.topic)).toEqual([topics.household('hh1'), topics.household('hh2')]);
    expect(out[0]!.payload).toEqual(Buffer.from(streamOf(fa, A)));
    expect(out[1]!.payload).toEqual(Buffer.from(streamOf(fb, B)));
    expect(pes.windows.counters.replay).toBe(1);
    expect(pes.streamMessages).toBe(2);
    // The household opens it to its meter's batch; the other household's key does not.
    const body = parseStreamBody(openMeterStream(streamKey.hh1, topics.household('hh1'), out[0]!.payload));
    expect(body).toEqual(parseStreamBody(streamBody(A, batch(1))));
    expect(body.readings.map((r) => r.importWh)).toEqual([1040, 1050, 1060]);
    expect(() => openMeterStream(streamKey.hh2, topics.household('hh1'), out[0]!.payload)).toThrow(/failed authentication/);
    // Moved by the PES to the other household's topic, it opens with neither key.
    for (const k of [streamKey.hh1, streamKey.hh2]) expect(() => openMeterStream(k, topics.household('hh2'), out[0]!.payload)).toThrow(/failed authentication/);
  });

  it("refuses to forward meter A's message inside meter B's frame, or under another counter, and still folds the frame", () => {
    const fa = frame(A, 2);
    const bPayload = decodeE2ePayload(key, openFrame(meterKey[B]!, decodeFrame(frame(B, 2))));
    const before = pes.windows.counters.frames;
    // B's own frame 3 (a valid GCM under B's key) carrying A's message of frame 2.
    pes.ingestUplink(uplink(frame(B, 3, encodeE2ePayload(key, { ...bPayload, readings: batch(3).readings.map((r) => ({ time: r.time, period: r.period, status: r.status })), snapshots: [], stream: streamOf(fa, A) }))), 'gw-nb1');
    // A's frame 4 carrying A's own message of frame 2 (another counter: a replay of an old message).
    pes.ingestUplink(uplink(frame(A, 4, encodeE2ePayload(key, { readings: batch(4).readings.map((r) => ({ time: r.time, period: r.period, status: r.status })), snapshots: [], stream: streamOf(fa, A) }))), 'gw-nb1');
    expect(pes.windows.counters.badStream).toBe(2);
    expect(pes.windows.counters.frames).toBe(before + 2);
    expect(pes.takeOutbox().filter((m) => m.topic.startsWith('sm/v1/household/'))).toEqual([]);
  });
});
