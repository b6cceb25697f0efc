import { execFileSync, spawnSync } from 'node:child_process';
import { generateKeyPair, generateKeyPairSync, sign, verify, type KeyObject } from 'node:crypto';
import { promisify } from 'node:util';
import { beforeAll, describe, expect, it } from 'vitest';
import { cborDecode, cborEncode } from '../../protocol/cbor.js';
import { aggregateSigned, parseAggregateEnvelope, parseStream, streamEpochSigned } from '../../protocol/envelope.js';
import { keyId, newStreamKey, openAggregate, openStream, sealAggregate, sealStream, SignatureError } from '../../protocol/seal.js';
import { topics } from '../../protocol/topics.js';

const rsa = async () => (await promisify(generateKeyPair)('rsa', { modulusLength: 2048 })) as { publicKey: KeyObject; privateKey: KeyObject };
let mdms: { publicKey: KeyObject; privateKey: KeyObject };
let other: { publicKey: KeyObject; privateKey: KeyObject };
beforeAll(async () => {
  [mdms, other] = await Promise.all([rsa(), rsa()]);
});
/** The PES's Ed25519 signing key, and another one (a forger's, or another PES's). */
const pes = generateKeyPairSync('ed25519');
const forger = generateKeyPairSync('ed25519');

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
/** An aggregate envelope with one field replaced and signed again (by `signer`, the PES unless told) over `topic`. */
const patchSigned = (payload: Uint8Array, i: number, f: (v: unknown) => unknown, t = topic, signer = pes.privateKey) => {
  const a = cborDecode(payload) as unknown[];
  a[i] = f(a[i]);
  const [, kid, wrapped, iv, ciphertext] = a as Uint8Array[];
  a[5] = sign(null, aggregateSigned(t, { kid: kid!, wrapped: wrapped!, iv: iv!, ciphertext: ciphertext! }), signer);
  return cborEncode(a);
};
/** A stream message with one field replaced and its epoch signed again (by `signer`, the PES unless told). */
const patchStreamSigned = (payload: Uint8Array, t: string, i: number, f: (v: unknown) => unknown, signer = pes.privateKey) => {
  const a = cborDecode(payload) as unknown[];
  a[i] = f(a[i]);
  a[4] = sign(null, streamEpochSigned(t, a[1] as Uint8Array, a[2] as number, a[3] as Uint8Array), signer);
  return cborEncode(a);
};

describe('aggregate seal', () => {
  it('opens to the body it sealed; every seal is fresh and signed by the PES', () => {
    const p = sealAggregate(mdms.publicKey, topic, body, pes.privateKey);
    expect(openAggregate(mdms.privateKey, topic, p, pes.publicKey)).toEqual(body);
    expect(sealAggregate(mdms.publicKey, topic, body, pes.privateKey)).not.toEqual(p);
    const env = cborDecode(p) as unknown[];
    expect(env).toHaveLength(6);
    expect(env[0]).toBe(1);
    expect(env[1]).toEqual(keyId(mdms.publicKey));
    expect((env[2] as Uint8Array).length).toBe(256);
    expect((env[3] as Uint8Array).length).toBe(12);
    expect((env[5] as Uint8Array).length).toBe(64);
    // the last element is the PES's Ed25519 signature over [1, topic, kid, wrappedKey, iv, ciphertext||tag]
    const e = parseAggregateEnvelope(p);
    expect(verify(null, cborEncode([1, topic, env[1], env[2], env[3], env[4]]), pes.publicKey, e.sig)).toBe(true);
  });

  it('with the wrong private key: a clear error naming both key ids', () => {
    const p = sealAggregate(mdms.publicKey, topic, body, pes.privateKey);
    const theirs = keyId(mdms.publicKey).toString('hex');
    const ours = keyId(other.publicKey).toString('hex');
    expect(() => openAggregate(other.privateKey, topic, p, pes.publicKey)).toThrow(`sealed for key ${theirs}, not ours (${ours})`);
  });

  it('re-published on another topic: the signature does not verify, and the AAD would not either', () => {
    const p = sealAggregate(mdms.publicKey, topic, body, pes.privateKey);
    expect(() => openAggregate(mdms.privateKey, topics.neighbourhood('nb2'), p, pes.publicKey)).toThrow(SignatureError);
    expect(() => openAggregate(mdms.privateKey, topics.billing('nb1'), p, pes.publicKey)).toThrow(SignatureError);
    // even signed by the PES for the other topic, the AAD still binds the topic it was sealed for
    expect(() => openAggregate(mdms.privateKey, topics.neighbourhood('nb2'), patchSigned(p, 0, (v) => v, topics.neighbourhood('nb2')), pes.publicKey)).toThrow(/^authentication failed$/);
    expect(() => openAggregate(mdms.privateKey, topics.billing('nb1'), patchSigned(p, 0, (v) => v, topics.billing('nb1')), pes.publicKey)).toThrow(/^authentication failed$/);
  });

  it('unsigned, signed by another key, or for another topic: SignatureError before any RSA', () => {
    const p = sealAggregate(mdms.publicKey, topic, body, pes.privateKey);
    const unsigned = cborEncode((cborDecode(p) as unknown[]).slice(0, 5));
    expect(() => openAggregate(mdms.privateKey, topic, unsigned, pes.publicKey)).toThrow(SignatureError);
    expect(() => openAggregate(mdms.privateKey, topic, unsigned, pes.publicKey)).toThrow(/unsigned aggregate seal/);
    expect(() => openAggregate(mdms.privateKey, topic, patchSigned(p, 0, (v) => v, topic, forger.privateKey), pes.publicKey)).toThrow(SignatureError);
    expect(() => openAggregate(mdms.privateKey, topic, patchSigned(p, 0, (v) => v, topics.neighbourhood('nb2')), pes.publicKey)).toThrow(SignatureError);
    // a forger's own seal, with a valid RSA wrap to the MDMS, signed with their key
    expect(() => openAggregate(mdms.privateKey, topic, sealAggregate(mdms.publicKey, topic, body, forger.privateKey), pes.publicKey)).toThrow(/the PES signature does not verify/);
    // the signature itself altered, or of the wrong size
    expect(() => openAggregate(mdms.privateKey, topic, patch(p, 5, (v) => flip(v, 10)), pes.publicKey)).toThrow(SignatureError);
    expect(() => openAggregate(mdms.privateKey, topic, patch(p, 5, (v) => (v as Uint8Array).subarray(1)), pes.publicKey)).toThrow(/signature must be 64 bytes/);
    // a seven-element envelope is not an aggregate seal either
    expect(() => openAggregate(mdms.privateKey, topic, patch(p, 6, () => new Uint8Array(1)), pes.publicKey)).toThrow(TypeError);
    // misuse: the wrong kind of key is a TypeError, not a silent pass
    expect(() => openAggregate(mdms.privateKey, topic, p, pes.privateKey)).toThrow(/Ed25519 public key/);
    expect(() => openAggregate(mdms.privateKey, topic, p, mdms.publicKey)).toThrow(/Ed25519 public key/);
    expect(() => sealAggregate(mdms.publicKey, topic, body, pes.publicKey)).toThrow(/Ed25519 private key/);
  });

  it('tampered anywhere: fails (unsigned tampering on the signature; signed again by the PES, on the layer below)', () => {
    const p = sealAggregate(mdms.publicKey, topic, body, pes.privateKey);
    for (const i of [1, 2, 3, 4]) expect(() => openAggregate(mdms.privateKey, topic, patch(p, i, (v) => flip(v)), pes.publicKey)).toThrow(SignatureError);
    expect(() => openAggregate(mdms.privateKey, topic, patch(p, 0, () => 2), pes.publicKey)).toThrow(/not an aggregate seal/);
    expect(() => openAggregate(mdms.privateKey, topic, patchSigned(p, 1, (v) => flip(v)), pes.publicKey)).toThrow(/sealed for key/);
    expect(() => openAggregate(mdms.privateKey, topic, patchSigned(p, 2, (v) => flip(v, 100)), pes.publicKey)).toThrow(/key unwrap failed/);
    expect(() => openAggregate(mdms.privateKey, topic, patchSigned(p, 3, (v) => flip(v)), pes.publicKey)).toThrow(/authentication failed/);
    const ctLen = (cborDecode(p) as Uint8Array[])[4]!.length;
    for (const at of [0, ctLen - 17, ctLen - 16, ctLen - 1]) {
      expect(() => openAggregate(mdms.privateKey, topic, patchSigned(p, 4, (v) => flip(v, at)), pes.publicKey)).toThrow(/authentication failed/);
    }
    expect(() => openAggregate(mdms.privateKey, topic, patch(p, 4, (v) => (v as Uint8Array).subarray(0, 15)), pes.publicKey)).toThrow(/ciphertext shorter than the tag/);
    expect(() => openAggregate(mdms.privateKey, topic, patch(p, 3, (v) => (v as Uint8Array).subarray(1)), pes.publicKey)).toThrow(/iv must be 12 bytes/);
    expect(() => openAggregate(mdms.privateKey, topic, p.subarray(0, p.length - 1), pes.publicKey)).toThrow(TypeError);
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
    const sk = newStreamKey(mdms.publicKey, 19675, hhTopic, pes.privateKey);
    const msgs = [0, 1, 2].map((i) => sealStream(sk, hhTopic, reading(i)));
    expect(new Set(msgs.map((m) => parseStream(m).wrapped.toString())).size).toBe(1); // one wrap per epoch
    expect(new Set(msgs.map((m) => Buffer.from(parseStream(m).epochSig).toString('hex'))).size).toBe(1); // one signature per epoch
    expect(cborDecode(msgs[0]!)).toHaveLength(7);
    expect(openStream(mdms.privateKey, pes.publicKey, hhTopic, msgs[2]!)).toEqual(reading(2));
    const cache = new Map<string, Buffer>();
    msgs.forEach((m, i) => expect(openStream(mdms.privateKey, pes.publicKey, hhTopic, m, cache)).toEqual(reading(i)));
    expect(cache.size).toBe(1);
    // a hit needs no RSA at all: even a private key that could not unwrap it is not consulted
    expect(openStream(other.privateKey, pes.publicKey, hhTopic, msgs[1]!, cache)).toEqual(reading(1));
    const next = sealStream(newStreamKey(mdms.publicKey, 19676, hhTopic, pes.privateKey), hhTopic, reading(3));
    expect(openStream(mdms.privateKey, pes.publicKey, hhTopic, next, cache)).toEqual(reading(3));
    expect(cache.size).toBe(2);
  });

  it('the epoch signature is the PES Ed25519 signature over [2, topic, kid, epoch, wrappedKey]', () => {
    const sk = newStreamKey(mdms.publicKey, 7, hhTopic, pes.privateKey);
    const e = parseStream(sealStream(sk, hhTopic, reading(0)));
    expect(verify(null, cborEncode([2, hhTopic, keyId(mdms.publicKey), 7, e.wrapped]), pes.publicKey, e.epochSig)).toBe(true);
    expect(() => sealStream(sk, topics.household('hh2'), reading(0))).toThrow(/another topic/);
    expect(() => newStreamKey(mdms.publicKey, 7, hhTopic, pes.publicKey)).toThrow(/Ed25519 private key/);
  });

  it('missing, forged or foreign epoch signature: SignatureError, never from the cache of a genuine epoch', () => {
    const sk = newStreamKey(mdms.publicKey, 9, hhTopic, pes.privateKey);
    const m = sealStream(sk, hhTopic, reading(0));
    const cache = new Map<string, Buffer>();
    expect(openStream(mdms.privateKey, pes.publicKey, hhTopic, m, cache)).toEqual(reading(0)); // the genuine epoch is cached
    const unsigned = cborEncode((cborDecode(m) as unknown[]).filter((_v, i) => i !== 4));
    expect(() => openStream(mdms.privateKey, pes.publicKey, hhTopic, unsigned, cache)).toThrow(SignatureError);
    expect(() => openStream(mdms.privateKey, pes.publicKey, hhTopic, unsigned, cache)).toThrow(/unsigned stream seal/);
    // same kid, epoch and wrapped key as the cached epoch, but the signature altered or made by another key
    expect(() => openStream(mdms.privateKey, pes.publicKey, hhTopic, patch(m, 4, (v) => flip(v, 5)), cache)).toThrow(SignatureError);
    expect(() => openStream(mdms.privateKey, pes.publicKey, hhTopic, patchStreamSigned(m, hhTopic, 0, (v) => v, forger.privateKey), cache)).toThrow(/epoch signature does not verify/);
    // a forger's whole epoch: a real RSA wrap to the household, signed with their key
    const forged = sealStream(newStreamKey(mdms.publicKey, 9, hhTopic, forger.privateKey), hhTopic, reading(1));
    expect(() => openStream(mdms.privateKey, pes.publicKey, hhTopic, forged, cache)).toThrow(SignatureError);
    // the genuine epoch's signature, presented under another household's topic
    expect(() => openStream(mdms.privateKey, pes.publicKey, topics.household('hh2'), m, cache)).toThrow(SignatureError);
    expect(cache.size).toBe(1);
    expect(() => openStream(mdms.privateKey, pes.privateKey, hhTopic, m)).toThrow(/Ed25519 public key/);
  });

  it('wrong key, other topic, tampered epoch or ciphertext: fails, and failures are not cached', () => {
    const sk = newStreamKey(mdms.publicKey, 5, hhTopic, pes.privateKey);
    const m = sealStream(sk, hhTopic, reading(0));
    const cache = new Map<string, Buffer>();
    expect(() => openStream(other.privateKey, pes.publicKey, hhTopic, m, cache)).toThrow(/sealed for key [0-9a-f]{16}, not ours/);
    expect(cache.size).toBe(0);
    // signed again by the PES for what the attacker changed: the layer below still refuses
    expect(() => openStream(mdms.privateKey, pes.publicKey, topics.household('hh2'), patchStreamSigned(m, topics.household('hh2'), 0, (v) => v), cache)).toThrow(/authentication failed/);
    expect(() => openStream(mdms.privateKey, pes.publicKey, hhTopic, patchStreamSigned(m, hhTopic, 2, () => 6), cache)).toThrow(/authentication failed/);
    expect(() => openStream(mdms.privateKey, pes.publicKey, hhTopic, patch(m, 2, () => 6), cache)).toThrow(SignatureError);
    expect(() => openStream(mdms.privateKey, pes.publicKey, hhTopic, patch(m, 6, (v) => flip(v, 3)), cache)).toThrow(/authentication failed/);
    expect(() => openStream(mdms.privateKey, pes.publicKey, hhTopic, patch(m, 5, (v) => flip(v)), cache)).toThrow(/authentication failed/);
    expect(() => openStream(mdms.privateKey, pes.publicKey, hhTopic, patchStreamSigned(m, hhTopic, 3, (v) => flip(v, 200)))).toThrow(/key unwrap failed/);
    expect(() => openStream(mdms.privateKey, pes.publicKey, hhTopic, sealAggregate(mdms.publicKey, hhTopic, {}, pes.privateKey))).toThrow(/sealed stream message must be an array of 6..7|not a stream seal/);
    expect(() => parseStream(patch(m, 0, () => 1))).toThrow(/not a stream seal/);
    expect(() => newStreamKey(mdms.publicKey, -1, hhTopic, pes.privateKey)).toThrow(TypeError);
  });
});
