import { execFileSync, spawnSync } from 'node:child_process';
import { generateKeyPair, type KeyObject } from 'node:crypto';
import { promisify } from 'node:util';
import { beforeAll, describe, expect, it } from 'vitest';
import { cborDecode, cborEncode } from '../../protocol/cbor.js';
import { parseStream } from '../../protocol/envelope.js';
import { keyId, newStreamKey, openAggregate, openStream, sealAggregate, sealStream } from '../../protocol/seal.js';
import { topics } from '../../protocol/topics.js';

const rsa = async () => (await promisify(generateKeyPair)('rsa', { modulusLength: 2048 })) as { publicKey: KeyObject; privateKey: KeyObject };
let mdms: { publicKey: KeyObject; privateKey: KeyObject };
let other: { publicKey: KeyObject; privateKey: KeyObject };
beforeAll(async () => {
  [mdms, other] = await Promise.all([rsa(), rsa()]);
});

const topic = topics.neighbourhood('nb1');
const body = { kind: 'neighbourhood', key: 'nb1', start: 1_699_999_200, end: 1_700_000_100, revision: 3, meters: 25, energyWh: 2 ** 33 + 1 };
/** Re-encodes an envelope with one field replaced. */
const patch = (payload: Uint8Array, i: number, f: (v: unknown) => unknown) => {
  const a = cborDecode(payload) as unknown[];
  a[i] = f(a[i]);
  return cborEncode(a);
};
const flip = (v: unknown, at = 0) => {
  const b = Buffer.from(v as Uint8Array);
  b[at]! ^= 1;
  return b;
};

describe('aggregate seal', () => {
  it('opens to the body it sealed; every seal is fresh', () => {
    const p = sealAggregate(mdms.publicKey, topic, body);
    expect(openAggregate(mdms.privateKey, topic, p)).toEqual(body);
    expect(sealAggregate(mdms.publicKey, topic, body)).not.toEqual(p);
    const env = cborDecode(p) as unknown[];
    expect(env[0]).toBe(1);
    expect(env[1]).toEqual(keyId(mdms.publicKey));
    expect((env[2] as Uint8Array).length).toBe(256);
    expect((env[3] as Uint8Array).length).toBe(12);
  });

  it('with the wrong private key: a clear error naming both key ids', () => {
    const p = sealAggregate(mdms.publicKey, topic, body);
    const theirs = keyId(mdms.publicKey).toString('hex');
    const ours = keyId(other.publicKey).toString('hex');
    expect(() => openAggregate(other.privateKey, topic, p)).toThrow(`sealed for key ${theirs}, not ours (${ours})`);
  });

  it('re-published on another topic: fails', () => {
    const p = sealAggregate(mdms.publicKey, topic, body);
    expect(() => openAggregate(mdms.privateKey, topics.neighbourhood('nb2'), p)).toThrow(/^authentication failed$/);
    expect(() => openAggregate(mdms.privateKey, topics.billing('nb1'), p)).toThrow(/^authentication failed$/);
  });

  it('tampered anywhere: fails', () => {
    const p = sealAggregate(mdms.publicKey, topic, body);
    expect(() => openAggregate(mdms.privateKey, topic, patch(p, 0, () => 2))).toThrow(/not an aggregate seal/);
    expect(() => openAggregate(mdms.privateKey, topic, patch(p, 1, (v) => flip(v)))).toThrow(/sealed for key/);
    expect(() => openAggregate(mdms.privateKey, topic, patch(p, 2, (v) => flip(v, 100)))).toThrow(/key unwrap failed/);
    expect(() => openAggregate(mdms.privateKey, topic, patch(p, 3, (v) => flip(v)))).toThrow(/authentication failed/);
    const ctLen = (cborDecode(p) as Uint8Array[])[4]!.length;
    for (const at of [0, ctLen - 17, ctLen - 16, ctLen - 1]) {
      expect(() => openAggregate(mdms.privateKey, topic, patch(p, 4, (v) => flip(v, at)))).toThrow(/authentication failed/);
    }
    expect(() => openAggregate(mdms.privateKey, topic, patch(p, 4, (v) => (v as Uint8Array).subarray(0, 15)))).toThrow(/ciphertext shorter than the tag/);
    expect(() => openAggregate(mdms.privateKey, topic, patch(p, 3, (v) => (v as Uint8Array).subarray(1)))).toThrow(/iv must be 12 bytes/);
    expect(() => openAggregate(mdms.privateKey, topic, p.subarray(0, p.length - 1))).toThrow(TypeError);
  });

  const openssl = spawnSync('openssl', ['version']).status === 0;
  it.skipIf(!openssl)('kid is what the documented openssl pipeline computes', () => {
    const pem = mdms.privateKey.export({ type: 'pkcs8', format: 'pem' }) as string;
    const der = execFileSync('openssl', ['pkey', '-pubout', '-outform', 'DER'], { input: pem });
    const digest = execFileSync('openssl', ['dgst', '-sha256', '-binary'], { input: der });
    expect(digest.subarray(0, 8)).toEqual(keyId(mdms.publicKey));
  });
});

describe('stream seal', () => {
  const hhTopic = topics.household('hh1');
  const reading = (i: number) => ({ meter: '534d5200000003e9', prevWh: 10 + i, readings: [[1_700_000_000 + 60 * i, 60, 11 + i, 60, 0]] });

  it('opens each message alone, and with a cache unwraps each epoch key once', () => {
    const sk = newStreamKey(mdms.publicKey, 19675);
    const msgs = [0, 1, 2].map((i) => sealStream(sk, hhTopic, reading(i)));
    expect(new Set(msgs.map((m) => parseStream(m).wrapped.toString())).size).toBe(1); // one wrap per epoch
    expect(openStream(mdms.privateKey, hhTopic, msgs[2]!)).toEqual(reading(2));
    const cache = new Map<string, Buffer>();
    msgs.forEach((m, i) => expect(openStream(mdms.privateKey, hhTopic, m, cache)).toEqual(reading(i)));
    expect(cache.size).toBe(1);
    // a hit needs no RSA at all: even a private key that could not unwrap it is not consulted
    expect(openStream(other.privateKey, hhTopic, msgs[1]!, cache)).toEqual(reading(1));
    const next = sealStream(newStreamKey(mdms.publicKey, 19676), hhTopic, reading(3));
    expect(openStream(mdms.privateKey, hhTopic, next, cache)).toEqual(reading(3));
    expect(cache.size).toBe(2);
  });

  it('wrong key, other topic, tampered epoch or ciphertext: fails, and failures are not cached', () => {
    const sk = newStreamKey(mdms.publicKey, 5);
    const m = sealStream(sk, hhTopic, reading(0));
    const cache = new Map<string, Buffer>();
    expect(() => openStream(other.privateKey, hhTopic, m, cache)).toThrow(/sealed for key [0-9a-f]{16}, not ours/);
    expect(cache.size).toBe(0);
    expect(() => openStream(mdms.privateKey, topics.household('hh2'), m, cache)).toThrow(/authentication failed/);
    expect(() => openStream(mdms.privateKey, hhTopic, patch(m, 2, () => 6), cache)).toThrow(/authentication failed/);
    expect(() => openStream(mdms.privateKey, hhTopic, patch(m, 5, (v) => flip(v, 3)), cache)).toThrow(/authentication failed/);
    expect(() => openStream(mdms.privateKey, hhTopic, patch(m, 3, (v) => flip(v, 200)))).toThrow(/key unwrap failed/);
    expect(() => openStream(mdms.privateKey, hhTopic, sealAggregate(mdms.publicKey, hhTopic, {}))).toThrow(/sealed stream message must be an array of 6..6|not a stream seal/);
    expect(() => parseStream(patch(m, 0, () => 1))).toThrow(/not a stream seal/);
    expect(() => newStreamKey(mdms.publicKey, -1)).toThrow(TypeError);
  });
});
