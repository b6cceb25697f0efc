/**
 * Bounded fuzzing of everything that parses outside input (a few seconds in all). Hangs would show as the
 * suite's timeout; the properties below check that damage is contained, counted and reported as errors.
 */
import { generateKeyPairSync } from 'node:crypto';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { cborDecode, cborEncode } from '../../protocol/cbor.js';
import { crc16x25 } from '../../protocol/crc.js';
import { decodeMessage, encodeAck, encodeFrame, SC_AES256GCM, sealFrame, systemTitle } from '../../protocol/frame.js';
import { encodeLinkFrame } from '../../protocol/link.js';
import { decodeReadingBatch, encodeReadingBatch } from '../../protocol/reading.js';
import { parseStream } from '../../protocol/envelope.js';
import { newStreamKey, openAggregate, openStream, sealAggregate, sealStream } from '../../protocol/seal.js';
import { topics } from '../../protocol/topics.js';
import { decodeUplink, encodeUplink } from '../../protocol/uplink.js';
import { linkModel, runParser } from './link-model.js';

type Mutation =
  | { kind: 'flip'; at: number; bit: number }
  | { kind: 'cut'; at: number; len: number }
  | { kind: 'dup'; at: number; len: number }
  | { kind: 'insert'; at: number; byte: number };

const mutationArb: fc.Arbitrary<Mutation> = fc.oneof(
  fc.record({ kind: fc.constant('flip' as const), at: fc.nat(), bit: fc.nat({ max: 7 }) }),
  fc.record({ kind: fc.constant('cut' as const), at: fc.nat(), len: fc.integer({ min: 1, max: 40 }) }),
  fc.record({ kind: fc.constant('dup' as const), at: fc.nat(), len: fc.integer({ min: 1, max: 40 }) }),
  fc.record({ kind: fc.constant('insert' as const), at: fc.nat(), byte: fc.oneof(fc.constantFrom(0x7e, 0x7d), fc.nat({ max: 255 })) }),
);

/** Applies bit flips, truncations, duplications and insertions (positions taken modulo the length). */
function mutate(input: Uint8Array, mutations: Mutation[]): Buffer {
  let b = Buffer.from(input);
  for (const m of mutations) {
    const at = b.length === 0 ? 0 : m.at % b.length;
    if (m.kind === 'flip' && b.length > 0) b[at]! ^= 1 << m.bit;
    else if (m.kind === 'cut') b = Buffer.concat([b.subarray(0, at), b.subarray(at + m.len)]);
    else if (m.kind === 'dup') b = Buffer.concat([b.subarray(0, at + m.len), b.subarray(at, at + m.len), b.subarray(at + m.len)]);
    else if (m.kind === 'insert') b = Buffer.concat([b.subarray(0, at), Buffer.from([m.byte]), b.subarray(at)]);
  }
  return b;
}

/** Each flag-delimited segment, unstuffed (no state machine), for checking what the parser emitted. */
function segments(wire: Uint8Array): Buffer[] {
  const parts = Buffer.from(wire).toString('latin1').split('\x7e').slice(1, -1);
  return parts.filter((p) => p.length > 0).map((p) => Buffer.from(p.replace(/\x7d([\s\S])/g, (_m, c: string) => String.fromCharCode(c.charCodeAt(0) ^ 0x20)), 'latin1'));
}

const isSubsequence = (sub: Buffer[], seq: Buffer[]) => {
  let i = 0;
  for (const x of seq) if (i < sub.length && x.equals(sub[i]!)) i++;
  return i === sub.length;
};

describe('fuzz: LinkParser with good frames, noise and mutated frames interleaved', () => {
  const payloadArb = fc.oneof(
    fc.uint8Array({ minLength: 1, maxLength: 120 }),
    fc.array(fc.constantFrom(0x7e, 0x7d, 0x5e, 0x5d, 0x00), { minLength: 1, maxLength: 60 }).map((a) => Uint8Array.from(a)),
  );
  const pieceArb = fc.oneof(
    { weight: 3, arbitrary: payloadArb.map((p) => ({ kind: 'good' as const, payload: Buffer.from(p) })) },
    { weight: 2, arbitrary: fc.tuple(payloadArb, fc.array(mutationArb, { minLength: 1, maxLength: 4 })).map(([p, m]) => ({ kind: 'damaged' as const, bytes: mutate(encodeLinkFrame(p), m) })) },
    { weight: 1, arbitrary: fc.uint8Array({ maxLength: 60 }).map((u) => ({ kind: 'noise' as const, bytes: Buffer.from(u) })) },
  );

  it('never throws, emits every intact frame, emits only CRC-valid payloads, and counts the rest', async () => {
    await fc.assert(
      fc.asyncProperty(fc.array(pieceArb, { maxLength: 12 }), fc.uniqueArray(fc.nat(), { maxLength: 6 }), async (pieces, cuts) => {
        const wire = Buffer.concat(pieces.map((p) => (p.kind === 'good' ? encodeLinkFrame(p.payload) : p.bytes)));
        const at = [...new Set([0, ...cuts.map((c) => (wire.length ? c % wire.length : 0)), wire.length])].sort((a, b) => a - b);
        const out = await runParser(at.slice(1).map((end, k) => wire.subarray(at[k]!, end)));

        // every intact frame comes out, in order, whatever surrounds it
        const intact = pieces.filter((p) => p.kind === 'good').map((p) => p.payload);
        expect(isSubsequence(intact, out.payloads)).toBe(true);

        // everything that comes out had a matching FCS on the wire
        const valid = segments(wire).filter((s) => s.length >= 3 && crc16x25(s.subarray(0, -2)) === s.readUInt16LE(s.length - 2));
        for (const p of out.payloads) expect(valid.some((s) => s.subarray(0, -2).equals(p))).toBe(true);

        // accounting: each non-empty segment is one delivered or one counted frame; garbage is the head and the tail
        const c = out.counters;
        expect(c.frames).toBe(out.payloads.length);
        const first = wire.indexOf(0x7e);
        const last = wire.lastIndexOf(0x7e);
        const nSegments = first < 0 ? 0 : segments(wire).length;
        expect(c.frames + c.badCrc + c.malformed + c.oversize).toBe(nSegments);
        const head = first < 0 ? wire.length : first;
        const tail = first < 0 ? 0 : wire.length - last - 1;
        expect(c.garbageBytes).toBe(head + tail);
        expect(c.resyncs).toBe(c.badCrc + c.malformed + c.oversize + Number(head > 0) + Number(tail > 0));
        if (pieces.every((p) => p.kind === 'good')) expect(c).toEqual({ frames: pieces.length, badCrc: 0, oversize: 0, malformed: 0, resyncs: 0, garbageBytes: 0 });

        // and exactly what the whole-buffer reference model predicts
        expect(out).toEqual(linkModel(wire));
      }),
      { numRuns: 300 },
    );
  });
});

describe('fuzz: decoders on arbitrary and mutated bytes throw only errors with a message', () => {
  const key = Buffer.alloc(32, 7);
  const st = systemTitle('SMR', 1001);
  const batch = encodeReadingBatch({ prevWh: 5, readings: [{ time: 1_700_000_000, period: 900, importWh: 9, powerW: 16, status: 0 }] });
  const frame = encodeFrame(sealFrame(key, { systemTitle: st, sc: SC_AES256GCM, ic: 3 }, batch));
  const { publicKey, privateKey } = generateKeyPairSync('rsa', { modulusLength: 1024 }); // small: speed only
  const pes = generateKeyPairSync('ed25519');
  const aggTopic = topics.neighbourhood('nb1');
  const hhTopic = topics.household('hh1');
  const seeds = [
    batch,
    frame,
    encodeAck({ systemTitle: st, ic: 3 }),
    encodeUplink({ gateway: 'gw-nb1', frames: [frame, frame] }),
    sealAggregate(publicKey, aggTopic, { kind: 'neighbourhood', energyWh: 1 }, pes.privateKey),
    sealStream(newStreamKey(publicKey, 1, hhTopic, pes.privateKey), hhTopic, { meter: 'x', readings: [[1, 2, 3, 4, 0]] }),
    cborEncode({ a: [1, -2, 2 ** 40, 'x', null, true, 1.5, new Uint8Array(3)] }),
  ];
  const decoders: [string, (b: Uint8Array) => unknown, boolean][] = [
    ['cborDecode', cborDecode, true],
    ['decodeMessage', decodeMessage, true],
    ['decodeReadingBatch', decodeReadingBatch, true],
    ['decodeUplink', decodeUplink, true],
    ['parseStream', parseStream, true],
    ['openAggregate', (b) => openAggregate(privateKey, aggTopic, b, pes.publicKey), false],
    ['openStream', (b) => openStream(privateKey, pes.publicKey, hhTopic, b, new Map()), false],
  ];
  const check = (bytes: Uint8Array) => {
    for (const [name, decode, typeErrorOnly] of decoders) {
      try {
        decode(bytes);
      } catch (e) {
        expect(e, name).toBeInstanceOf(typeErrorOnly ? TypeError : Error);
        expect((e as Error).message.length, name).toBeGreaterThan(0);
      }
    }
  };

  it('random bytes', () => {
    fc.assert(fc.property(fc.uint8Array({ maxLength: 400 }), check), { numRuns: 800 });
  });

  it('valid messages with bit flips, cuts, duplications and insertions', () => {
    fc.assert(fc.property(fc.constantFrom(...seeds), fc.array(mutationArb, { minLength: 1, maxLength: 5 }), (seed, m) => check(mutate(seed, m))), { numRuns: 800 });
  });

  it('length headers of every size, backed or not by the bytes that follow', () => {
    const headerArb = fc.tuple(
      fc.integer({ min: 0, max: 7 }),
      fc.oneof(fc.integer({ min: 0, max: 23 }), fc.bigInt({ min: 0n, max: 2n ** 64n - 1n })),
      fc.uint8Array({ maxLength: 40 }),
      fc.uint8Array({ maxLength: 4 }),
    );
    fc.assert(
      fc.property(headerArb, ([major, n, rest, prefix]) => {
        const v = BigInt(n);
        const size = v < 24n ? 0 : v < 0x100n ? 1 : v < 0x10000n ? 2 : v < 0x100000000n ? 4 : 8;
        const ib = (major << 5) | (size === 0 ? Number(v) : 24 + Math.log2(size));
        const h = Buffer.concat([Buffer.from([ib]), size === 0 ? Buffer.alloc(0) : Buffer.from(v.toString(16).padStart(size * 2, '0'), 'hex')]);
        const bytes = Buffer.concat([prefix, h, rest]);
        check(bytes);
        // a length the input cannot back is refused outright
        if ((major === 2 || major === 3) && v > BigInt(rest.length) && prefix.length === 0) {
          expect(() => cborDecode(bytes)).toThrow(/bytes but only|2\^53|truncated/);
        }
      }),
      { numRuns: 800 },
    );
  });

  it('any plain CBOR value given to the message decoders', () => {
    const plain = fc.letrec((tie) => ({
      v: fc.oneof(
        { depthSize: 'small' },
        fc.maxSafeInteger(),
        fc.constantFrom(0, 1, 2, 0x32, 2 ** 32 - 1, 2 ** 32),
        fc.string({ maxLength: 10 }),
        fc.uint8Array({ maxLength: 20 }),
        fc.constantFrom(null, true, undefined, 1.5),
        fc.array(tie('v'), { maxLength: 7 }),
        fc.dictionary(fc.string({ maxLength: 4 }), tie('v'), { maxKeys: 3 }),
      ),
    })).v;
    fc.assert(fc.property(plain, (v) => check(cborEncode(v))), { numRuns: 800 });
  });
});
