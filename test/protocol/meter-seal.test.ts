// protocol/meter-seal.ts + envelope.ts (docs/protocol.md §11.5): the household stream sealed at the meter opens
// only with the household's stream key, on the household's topic, as the meter and frame counter that sealed it;
// every field of the envelope is validated, and every alteration is refused. And the e2e frame payload carries
// it as an optional fourth element whose envelope is checked.
import { randomBytes } from 'node:crypto';
import { beforeAll, describe, expect, it } from 'vitest';
import { cborDecode, cborEncode } from '../../protocol/cbor.js';
import { decodeE2ePayload, encodeE2ePayload, registerLayout } from '../../protocol/e2e.js';
import { parseMeterStream, SEAL_METER_STREAM, streamSealType } from '../../protocol/envelope.js';
import { meterStreamKeySync } from '../../protocol/household-key.js';
import { openMeterStream, sealMeterStream } from '../../protocol/meter-seal.js';
import { generatePaillier, type PrivateKey } from '../../protocol/paillier/engine.js';
import { parseStreamBody, streamBody } from '../../protocol/stream.js';
import { topics } from '../../protocol/topics.js';

const ST_A = Buffer.from('534d520000000001', 'hex');
const ST_B = Buffer.from('534d520000000002', 'hex');
const T = topics.household('hh1');
const batch = { prevWh: 1000, readings: [{ time: 1700002740, period: 60, importWh: 1004, powerW: 240, status: 0 }] };
const key = meterStreamKeySync('ABCD-EFGH-JKLM', 'hh1');
const sealed = () => sealMeterStream(key, T, ST_A, 7, streamBody('534d520000000001', batch));
const edit = (f: (a: unknown[]) => void) => {
  const a = cborDecode(sealed()) as unknown[];
  f(a);
  return cborEncode(a);
};

describe('meter-sealed stream', () => {
  it('opens to the stream body with the household key, on its topic', () => {
    const body = parseStreamBody(openMeterStream(key, T, sealed()));
    expect(body).toEqual({ meter: '534d520000000001', ...batch });
    expect(streamSealType(sealed())).toBe(SEAL_METER_STREAM);
    const e = parseMeterStream(sealed());
    expect(Buffer.from(e.systemTitle)).toEqual(ST_A);
    expect(e.ic).toBe(7);
  });

  it('derives another key per household and per code, not the binding key', () => {
    expect(meterStreamKeySync('ABCD-EFGH-JKLM', 'hh2')).not.toEqual(key);
    expect(meterStreamKeySync('ABCD-EFGH-JKLN', 'hh1')).not.toEqual(key);
    expect(meterStreamKeySync('abcd efgh jklm', 'hh1')).toEqual(key); // the typed code is normalised
  });

  it.each([
    ['another household topic', () => openMeterStream(key, topics.household('hh2'), sealed())],
    ['another key', () => openMeterStream(meterStreamKeySync('ABCD-EFGH-JKLM', 'hh2'), T, sealed())],
    ["meter A's message relabelled as meter B's", () => openMeterStream(key, T, edit((a) => (a[1] = ST_B)))],
    ['another frame counter (a replay under another frame)', () => openMeterStream(key, T, edit((a) => (a[2] = 8)))],
    ['another IV', () => openMeterStream(key, T, edit((a) => (a[3] = randomBytes(12))))],
    ['a flipped ciphertext bit', () => openMeterStream(key, T, edit((a) => ((a[4] as Uint8Array)[0]! ^= 1)))],
  ])('refuses %s', (_n, open) => {
    expect(open).toThrow(/failed authentication/);
  });

  it.each([
    ['a classic stream seal type', (a: unknown[]) => (a[0] = 2), /not a meter stream seal/],
    ['a short system title', (a: unknown[]) => (a[1] = ST_A.subarray(0, 7)), /system title must be 8 bytes/],
    ['a negative counter', (a: unknown[]) => (a[2] = -1), /ic must be/],
    ['a counter beyond 32 bits', (a: unknown[]) => (a[2] = 2 ** 32), /ic must be/],
    ['a short IV', (a: unknown[]) => (a[3] = Buffer.alloc(11)), /iv must be 12 bytes/],
    ['a ciphertext shorter than the tag', (a: unknown[]) => (a[4] = Buffer.alloc(15)), /shorter than the tag/],
    ['an extra element', (a: unknown[]) => a.push(0), /array of 5\.\.5/],
  ])('parses and refuses %s', (_n, f, re) => {
    expect(() => openMeterStream(key, T, edit(f))).toThrow(re);
  });

  it('refuses a body naming another meter than the one that sealed it', () => {
    const lying = sealMeterStream(key, T, ST_A, 7, streamBody('534d520000000002', batch));
    expect(() => openMeterStream(key, T, lying)).toThrow(/another meter/);
  });

  it('refuses a key of the wrong size when sealing or opening', () => {
    expect(() => sealMeterStream(key.subarray(0, 16), T, ST_A, 7, {})).toThrow(/32 bytes/);
    expect(() => openMeterStream(key.subarray(0, 16), T, sealed())).toThrow(/32 bytes/);
  });
});

describe('e2e payload with the stream element', () => {
  let pk: PrivateKey;
  beforeAll(async () => {
    pk = await generatePaillier(512);
  });
  const readings = [{ time: 1700002740, period: 60, status: 0 }];

  it('round-trips the stream opaque, and refuses a malformed or oversized one', () => {
    const c = pk.encrypt(registerLayout(pk, 1).pack([7n, 0n]));
    const p = { readings, snapshots: [{ at: 1700002800, ciphertext: c }], stream: new Uint8Array(sealed()) };
    const back = decodeE2ePayload(pk, encodeE2ePayload(pk, p));
    expect(Buffer.from(back.stream!)).toEqual(Buffer.from(p.stream));
    expect(decodeE2ePayload(pk, encodeE2ePayload(pk, { readings, snapshots: [] })).stream).toBeUndefined();
    const top = (stream: unknown) => cborEncode([1, [[1700002740, 60, 0]], [], stream]);
    expect(() => decodeE2ePayload(pk, top('x'))).toThrow(/stream must be a byte string/);
    expect(() => decodeE2ePayload(pk, top(Buffer.alloc(4097)))).toThrow(/at most 4096/);
    expect(() => decodeE2ePayload(pk, top(cborEncode([2, 1, 2, 3, 4])))).toThrow(/not a meter stream seal/);
    expect(() => encodeE2ePayload(pk, { readings, snapshots: [], stream: Buffer.from('junk') })).toThrow();
  });
});
