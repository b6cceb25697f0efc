/**
 * Fuzz targets: every parser of outside input, fed random and structure-aware inputs, each with an oracle
 * that does not trust the code under test (docs/protocol.md re-implemented in test/security/fuzz-cbor.ts).
 *
 * | target | code under test | oracle |
 * |---|---|---|
 * | link | LinkParser over chunked streams of good, damaged and oversize frames and noise | only FCS-valid segments come out; every intact frame comes out; every segment counted (§3) |
 * | cbor+message | cborDecode, decodeMessage, decodeFrame, gateway classifyPayload | accept iff the reference decoder and §4/§6/§7 accept; same values |
 * | batch | decodeReadingBatch | accept iff §5 accepts (both forms); same values; import and export energies non-negative and each summing to its register delta |
 * | uplink | decodeUplink | accept iff §9 accepts; same values |
 * | seal | openAggregate, openStream (with a long-lived key cache) | opens only envelopes equal (as values) to one sealed for that topic, with that body |
 * | ucs-stream | the household app's WebCrypto opener (ucs/web/seal.ts), one long-lived opener | as for seal |
 * | pes | the PES MQTT handler (pes/mqtt.ts handleMessage -> ingestUplink -> commit) on a live PES | no forged or replayed frame folded; every frame counted once; every household stream message published is a genuine batch, once |
 * | mdms | the MDMS ingest handler (mdms/ingest.ts handleMessage -> openAggregate -> parseAggregate -> store) | only genuine seals on their own topic, or bodies sealed and signed by a holder of the PES signing key that pass §11.3 and the policy, are stored; unsigned or otherwise-signed seals never; sealed-for-another-key is never acknowledged |
 * | household-key | the PES MQTT handler on `sm/v1/pes/household-key/<hh>` | accept iff §10.1 (own household, RSA >= 2048) |
 * @module
 */
import { constants, createCipheriv, createHash, createPublicKey, generateKeyPairSync, publicEncrypt, randomBytes, sign, type KeyObject } from 'node:crypto';
import { Writable } from 'node:stream';
import fc from 'fast-check';
import type { IPublishPacket } from 'mqtt';
import { pino } from 'pino';
import { startBroker, type BrokerHandle } from '../../broker/broker.js';
import { classifyPayload } from '../../gateway/core.js';
import { startMdmsIngest, type MdmsIngest } from '../../mdms/ingest.js';
import { openStore } from '../../mdms/store/index.js';
import type { Store } from '../../mdms/store/types.js';
import { startPesService, type PesService } from '../../pes/mqtt.js';
import type { MeterInfo } from '../../pes/pes.js';
import { cborDecode, cborEncode } from '../../protocol/cbor.js';
import { crc16x25 } from '../../protocol/crc.js';
import { decodeFrame, decodeMessage, encodeAck, encodeFrame, encodeKeyAck, encodeKeyTransfer, meterId, SC_AES256GCM, sealFrame, systemTitle } from '../../protocol/frame.js';
import { encodeLinkFrame, LinkParser, MAX_PAYLOAD } from '../../protocol/link.js';
import { generatePaillier } from '../../protocol/paillier/engine.js';
import { decodeReadingBatch, encodeReadingBatch, readingEnergies, readingExports, type ReadingBatch } from '../../protocol/reading.js';
import { newStreamKey, openAggregate, openStream, sealAggregate, sealStream } from '../../protocol/seal.js';
import { sealMeterStream } from '../../protocol/meter-seal.js';
import { topics } from '../../protocol/topics.js';
import { decodeUplink, encodeUplink } from '../../protocol/uplink.js';
import {
  anyNodeArb,
  applyEdit,
  C,
  encodeNode,
  HUGE_LENGTHS,
  mutateBytes,
  mutationArb,
  refDecode,
  RefMap,
  sameValue,
  specBatch,
  specMessage,
  specUplink,
  TOPIC_ID,
  treeEditArb,
  type CNode,
  type RefValue,
} from './fuzz-cbor.js';
import { Violation, type FuzzTarget, type TargetRun, type Verdict } from './fuzz-harness.js';

const hex = (b: Uint8Array) => Buffer.from(b).toString('hex');
const silent = pino({ level: 'silent' });

/** Options for the targets that need keys (smaller in `npm test`). */
export interface TargetOptions {
  /** RSA modulus for MDMS and household keys (default 2048: the production minimum). */
  rsaBits?: number;
  /** Paillier modulus of the PES (default 1024). */
  paillierBits?: number;
  /** Frames per meter pre-sealed for the PES target (default 250). */
  framesPerMeter?: number;
}

/** Deterministic filler bytes (long inputs would be slow to draw byte by byte). */
function filler(len: number, seed: number, avoid?: number): Uint8Array {
  const out = new Uint8Array(len);
  let x = (seed >>> 0) || 1;
  for (let i = 0; i < len; i++) {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    let b = x & 0xff;
    if (b === avoid) b ^= 0x01;
    out[i] = b;
  }
  return out;
}

/** Rejections from a decoder must be TypeErrors with a message (protocol/cbor.ts contract); anything else is a crash. */
function expectTypeError(e: unknown, where: string): void {
  if (!(e instanceof TypeError) || e.message.length === 0) throw e instanceof Error ? Object.assign(e, { message: `${where}: ${e.message}` }) : new Error(`${where} threw ${String(e)}`);
}

/** Whether every map in a reference value has text keys only (the plain profile; cbor-x rejects other keys). */
function textKeysOnly(v: RefValue): boolean {
  if (v instanceof RefMap) return v.entries.every(([k, x]) => typeof k === 'string' && !k.startsWith('__proto_') && textKeysOnly(x as RefValue));
  if (Array.isArray(v)) return v.every(textKeysOnly);
  return true;
}
const hasMap = (v: RefValue): boolean => v instanceof RefMap || (Array.isArray(v) && v.some(hasMap));

// ---------------------------------------------------------------------------------------------------------
// Seeds: real messages of the protocol

function testMeter(serial: number) {
  const key = randomBytes(32);
  const st = systemTitle('SMR', serial);
  return { key, st, id: meterId(st) };
}

function batchOf(n: number, t0: number, prevWh: number, period = 60, step = (i: number) => 1 + ((i * 7) % 13)): ReadingBatch {
  let reg = prevWh;
  const readings = Array.from({ length: n }, (_, i) => {
    reg += step(i);
    return { time: t0 + i * period, period, importWh: reg, powerW: step(i) * 60, status: 0 };
  });
  return { prevWh, readings };
}

const T0 = 1_700_000_000 - (1_700_000_000 % 86400);

function frameTree(st: Uint8Array, sc: number, ic: number, ct: Uint8Array): CNode {
  return C.array(C.uint(1), C.uint(1), C.bytes(st), C.uint(sc), C.uint(ic), C.bytes(ct));
}
function batchTree(b: ReadingBatch): CNode {
  const long = b.prevExportWh !== undefined;
  const reading = (r: ReadingBatch['readings'][number]) =>
    C.array(C.uint(r.time), C.uint(r.period), C.uint(r.importWh), C.uint(r.powerW), C.uint(r.status), ...(long ? [C.uint(r.exportWh ?? 0)] : []));
  return C.array(C.uint(b.prevWh), C.array(...b.readings.map(reading)), ...(long ? [C.uint(b.prevExportWh!)] : []));
}
function uplinkTree(gw: string, frames: Uint8Array[]): CNode {
  return C.array(C.uint(1), C.text(gw), C.array(...frames.map((f) => C.bytes(f))));
}

/** Inputs made of raw bytes, and how they were made. */
interface BytesInput {
  how: string;
  bytes: Uint8Array;
}

/** Random, mutated, tree-edited, any-CBOR and lying-header inputs around `seeds` / `trees`. */
function bytesArb(seeds: Uint8Array[], trees: CNode[], extra: fc.Arbitrary<BytesInput>[] = []): fc.Arbitrary<BytesInput> {
  return fc.oneof(
    { weight: 1, arbitrary: fc.uint8Array({ maxLength: 300 }).map((bytes) => ({ how: 'random', bytes })) },
    { weight: 3, arbitrary: fc.tuple(fc.constantFrom(...seeds), mutationArb).map(([s, m]) => ({ how: 'mutated', bytes: mutateBytes(s, m) })) },
    { weight: 4, arbitrary: fc.tuple(fc.constantFrom(...trees), fc.array(treeEditArb, { minLength: 1, maxLength: 3 })).map(([t, e]) => ({ how: 'tree', bytes: encodeNode(e.reduce(applyEdit, t)) })) },
    { weight: 1, arbitrary: anyNodeArb.map((n) => ({ how: 'any-cbor', bytes: encodeNode(n) })) },
    {
      weight: 1,
      arbitrary: fc
        .tuple(fc.constantFrom(...trees), fc.array(fc.nat({ max: 1 << 16 }), { maxLength: 3 }), fc.constantFrom(...HUGE_LENGTHS))
        .map(([t, path, n]) => ({ how: 'huge-length', bytes: encodeNode(applyEdit(t, { op: 'lie', path, n })) })),
    },
    ...extra.map((arbitrary) => ({ weight: 1, arbitrary })),
  );
}

// ---------------------------------------------------------------------------------------------------------
// link: LinkParser

type LinkPiece =
  | { kind: 'good'; payload: Uint8Array }
  | { kind: 'damaged'; bytes: Uint8Array }
  | { kind: 'noise'; bytes: Uint8Array }
  | { kind: 'oversize'; bytes: Uint8Array };

/** Stuffs any payload (even one larger than MAX_PAYLOAD) into a link frame with a valid FCS. */
function stuffedFrame(payload: Uint8Array): Buffer {
  const fcs = crc16x25(payload);
  const body = [...payload, fcs & 0xff, fcs >> 8];
  const out = [0x7e];
  for (const b of body) if (b === 0x7e || b === 0x7d) out.push(0x7d, b ^ 0x20);
  else out.push(b);
  out.push(0x7e);
  return Buffer.from(out);
}

/** Each flag-delimited non-empty segment, unstuffed naively; FCS-valid ones give their payloads. */
function linkSegments(wire: Uint8Array): { segments: number; valid: Set<string> } {
  const valid = new Set<string>();
  let segments = 0;
  let start = -1;
  for (let i = 0; i < wire.length; i++) {
    if (wire[i] !== 0x7e) continue;
    if (start >= 0 && i > start + 1) {
      segments++;
      const seg = wire.subarray(start + 1, i);
      const out: number[] = [];
      let esc = false;
      let bad = false;
      for (let b of seg) {
        if (b === 0x7d) {
          if (esc) bad = true;
          esc = !esc;
          continue;
        }
        if (esc) {
          b ^= 0x20;
          esc = false;
        }
        out.push(b);
      }
      if (!bad && !esc && out.length >= 3 && out.length <= MAX_PAYLOAD + 2) {
        const p = Uint8Array.from(out.slice(0, -2));
        if (crc16x25(p) === (out[out.length - 2]! | (out[out.length - 1]! << 8))) valid.add(hex(p));
      }
    }
    start = i;
  }
  return { segments, valid };
}

export const linkTarget: FuzzTarget<{ pieces: LinkPiece[]; cuts: number[] }> = {
  name: 'link',
  what: 'LinkParser: chunked byte streams of intact, damaged and oversize link frames, noise and escape storms',
  weight: 22,
  async: true,
  async open() {
    const m = testMeter(7);
    const real = [1, 42, 0xffffffff].map((ic) => encodeFrame(sealFrame(m.key, { systemTitle: m.st, sc: SC_AES256GCM, ic }, encodeReadingBatch(batchOf(15, T0, 1000)))));
    real.push(encodeAck({ systemTitle: m.st, ic: 42 }));
    const payloadArb = fc.oneof(
      { weight: 3, arbitrary: fc.constantFrom(...real) },
      { weight: 3, arbitrary: fc.uint8Array({ minLength: 1, maxLength: 120 }) },
      { weight: 2, arbitrary: fc.array(fc.constantFrom(0x7e, 0x7d, 0x5e, 0x5d, 0x00), { minLength: 1, maxLength: 60 }).map((a) => Uint8Array.from(a)) },
      { weight: 1, arbitrary: fc.record({ len: fc.integer({ min: MAX_PAYLOAD - 3, max: MAX_PAYLOAD }), seed: fc.nat() }).map(({ len, seed }) => filler(len, seed)) },
    );
    const pieceArb: fc.Arbitrary<LinkPiece> = fc.oneof(
      { weight: 5, arbitrary: payloadArb.map((payload) => ({ kind: 'good' as const, payload })) },
      { weight: 3, arbitrary: fc.tuple(payloadArb, mutationArb).map(([p, mu]) => ({ kind: 'damaged' as const, bytes: mutateBytes(encodeLinkFrame(p), mu) })) },
      { weight: 2, arbitrary: fc.uint8Array({ maxLength: 60 }).map((bytes) => ({ kind: 'noise' as const, bytes })) },
      {
        weight: 1,
        arbitrary: fc
          .record({ len: fc.oneof(fc.integer({ min: MAX_PAYLOAD + 1, max: MAX_PAYLOAD + 8 }), fc.integer({ min: 4000, max: 12_000 })), seed: fc.nat(), flagged: fc.boolean() })
          .map(({ len, seed, flagged }) => ({ kind: 'oversize' as const, bytes: flagged ? stuffedFrame(filler(len, seed)) : filler(len, seed, 0x7e) })),
      },
    );
    return {
      arbitrary: fc.record({ pieces: fc.array(pieceArb, { maxLength: 12 }), cuts: fc.uniqueArray(fc.nat(), { maxLength: 8 }) }),
      show: (i) => i.pieces.map((p) => `${p.kind}:${hex(p.kind === 'good' ? p.payload : p.bytes).slice(0, 120)}`).join(' | '),
      async run({ pieces, cuts }): Promise<Verdict> {
        const wire = Buffer.concat(pieces.map((p) => (p.kind === 'good' ? encodeLinkFrame(p.payload) : p.bytes)));
        const at = [...new Set([0, ...cuts.map((c) => (wire.length ? c % wire.length : 0)), wire.length])].sort((a, b) => a - b);
        const parser = new LinkParser();
        const out: Buffer[] = [];
        let err: Error | undefined;
        parser.on('data', (p: Buffer) => out.push(p));
        parser.on('error', (e: Error) => (err = e));
        const ended = new Promise<void>((resolve) => parser.once('end', resolve));
        for (let k = 1; k < at.length; k++) parser.write(wire.subarray(at[k - 1]!, at[k]!));
        parser.end();
        await ended;
        if (err) throw err;
        const { segments, valid } = linkSegments(wire);
        const c = parser.counters;
        if (out.some((p) => !valid.has(hex(p)))) return 'forged';
        // every intact frame comes out, in order
        let i = 0;
        const intact = pieces.filter((p): p is Extract<LinkPiece, { kind: 'good' }> => p.kind === 'good');
        for (const p of out) if (i < intact.length && p.equals(intact[i]!.payload)) i++;
        if (i !== intact.length) throw new Violation(`only ${i} of ${intact.length} intact frames came out`);
        if (c.frames !== out.length || c.frames + c.badCrc + c.malformed + c.oversize !== segments) {
          throw new Violation(`counters ${JSON.stringify(c)} do not account for ${segments} segments and ${out.length} frames`);
        }
        const first = wire.indexOf(0x7e);
        const head = first < 0 ? wire.length : first;
        const tail = first < 0 ? 0 : wire.length - wire.lastIndexOf(0x7e) - 1;
        if (c.garbageBytes !== head + tail) throw new Violation(`garbageBytes ${c.garbageBytes}, expected ${head + tail}`);
        return out.length > 0 ? 'accepted' : 'rejected';
      },
      close() {},
    };
  },
};

// ---------------------------------------------------------------------------------------------------------
// cbor+message: cborDecode, decodeMessage, decodeFrame, classifyPayload

export const messageTarget: FuzzTarget<BytesInput> = {
  name: 'cbor+message',
  what: 'cborDecode / decodeMessage / decodeFrame / gateway classifyPayload against the reference decoder and §4-§7',
  weight: 20,
  async: false,
  async open() {
    const m = testMeter(9);
    const seal = (ic: number, pt: Uint8Array) => sealFrame(m.key, { systemTitle: m.st, sc: SC_AES256GCM, ic }, pt);
    const frames = [seal(0, new Uint8Array(0)), seal(42, encodeReadingBatch(batchOf(2, T0, 5))), seal(0xffffffff, encodeReadingBatch(batchOf(60, T0, 2 ** 40)))];
    const seeds = [...frames.map(encodeFrame), encodeAck({ systemTitle: m.st, ic: 7 }), encodeAck({ systemTitle: m.st, ic: 0xffffffff }), encodeKeyTransfer({ systemTitle: m.st, generation: 1, wrapped: new Uint8Array(40) }), encodeKeyAck({ systemTitle: m.st, generation: 0xffffffff })];
    const trees = [...frames.map((f) => frameTree(f.systemTitle, f.sc, f.ic, f.ciphertext)), C.array(C.uint(2), C.uint(1), C.bytes(m.st), C.uint(7))];
    let frameCount = 0;
    let ackCount = 0;
    return {
      arbitrary: bytesArb(seeds, trees),
      show: (i) => `${i.how} ${hex(i.bytes)}`,
      figures: () => ({ framesAccepted: frameCount, acksAccepted: ackCount }),
      run({ bytes }): Verdict {
        const ref = refDecode(bytes);
        // cborDecode: accepts exactly the plain subset, with the same values
        let decoded: unknown;
        let cborOk = true;
        try {
          decoded = cborDecode(bytes);
        } catch (e) {
          expectTypeError(e, 'cborDecode');
          cborOk = false;
        }
        const mapsAmbiguous = ref.ok && !textKeysOnly(ref.value);
        if (!mapsAmbiguous && cborOk !== ref.ok) throw new Violation(`cborDecode ${cborOk ? 'accepted' : 'rejected'}, the reference ${ref.ok ? 'accepts' : `rejects (${ref.why})`}`);
        if (cborOk && ref.ok && !hasMap(ref.value) && !sameValue(decoded, ref.value)) throw new Violation('cborDecode and the reference decode different values');

        const spec = ref.ok ? specMessage(ref.value) : null;
        let got: 'frame' | 'ack' | 'keyTransfer' | 'keyAck' | null = null;
        try {
          const msg = decodeMessage(bytes);
          const r = ref.ok ? (ref.value as RefValue[]) : [];
          let same: boolean;
          if (msg.type === 1) [got, same] = ['frame', sameValue([msg.systemTitle, msg.sc, msg.ic, msg.ciphertext], [r[2], r[3], r[4], r[5]])];
          else if (msg.type === 2) [got, same] = ['ack', sameValue([msg.systemTitle, msg.ic], [r[2], r[3]])];
          else if (msg.type === 3) [got, same] = ['keyTransfer', sameValue([msg.systemTitle, msg.generation, msg.wrapped], [r[2], r[3], r[4]])];
          else [got, same] = ['keyAck', sameValue([msg.systemTitle, msg.generation], [r[2], r[3]])];
          if (!same) throw new Violation('decodeMessage returned other values than the bytes carry');
        } catch (e) {
          if (e instanceof Violation) throw e;
          expectTypeError(e, 'decodeMessage');
        }
        if (got !== spec) throw new Violation(`decodeMessage ${got ?? 'rejected'}, the spec says ${spec ?? `invalid${ref.ok ? '' : ` (${ref.why})`}`}`);
        let frameOk = true;
        try {
          decodeFrame(bytes);
        } catch (e) {
          expectTypeError(e, 'decodeFrame');
          frameOk = false;
        }
        if (frameOk !== (spec === 'frame')) throw new Violation(`decodeFrame ${frameOk ? 'accepted' : 'rejected'} a ${spec ?? 'non-message'}`);
        const c = classifyPayload(bytes);
        const want = spec === 'frame' ? 'frame' : cborOk ? 'notAFrame' : 'malformed';
        if (c.kind !== want) throw new Violation(`classifyPayload said ${c.kind}, expected ${want}`);
        if (got === 'frame') frameCount++;
        if (got === 'ack') ackCount++;
        return got ? 'accepted' : 'rejected';
      },
      close() {},
    };
  },
};

// ---------------------------------------------------------------------------------------------------------
// batch: decodeReadingBatch

const batchRecordArb = (() => {
  const big = fc.oneof(fc.constantFrom(0, 1, 2 ** 32 - 1, 2 ** 32, 2 ** 48 - 1, 2 ** 48, 2 ** 48 + 1, 2 ** 53 - 1), fc.nat({ max: 2 ** 48 }));
  const reading = fc.tuple(
    fc.oneof(fc.constantFrom(0, T0, 0xffffffff, 0x100000000), fc.integer({ min: T0, max: T0 + 86400 })),
    fc.constantFrom(0, 1, 60, 900, 86400, 86401),
    big,
    fc.constantFrom(0, 1, 0xffffffff, 0x100000000),
    fc.constantFrom(0, 1, 2, 4, 6, 7, 8, 0x80, 0xff, 0x100),
  );
  // Long form (a third element) about half the time; a reading's export register drawn like the import one, and
  // dropped now and then so that mixed 5- and 6-element readings appear.
  return fc
    .record({ prevWh: big, readings: fc.array(fc.tuple(reading, big, fc.nat(9)), { minLength: 0, maxLength: 62 }), long: fc.option(big) })
    .map(({ prevWh, readings, long }) => ({
      how: 'record',
      bytes: encodeNode(
        C.array(
          C.uint(prevWh),
          C.array(...readings.map(([r, x, drop]) => C.array(...[...r, ...(long === null ? (drop === 0 ? [x] : []) : drop === 0 ? [] : [x])].map((y) => C.uint(y))))),
          ...(long === null ? [] : [C.uint(long)]),
        ),
      ),
    }));
})();

/** Batches that are valid by construction, with register resets and gaps. */
const validBatchArb = fc
  .record({
    prevWh: fc.nat({ max: 2 ** 40 }),
    prevExportWh: fc.oneof(fc.constant(0), fc.nat({ max: 2 ** 40 })),
    t: fc.integer({ min: 0, max: 0xffff0000 }),
    steps: fc.array(fc.tuple(fc.nat({ max: 5000 }), fc.integer({ min: 1, max: 900 }), fc.nat({ max: 120 }), fc.boolean(), fc.oneof(fc.constant(0), fc.nat({ max: 5000 }))), { minLength: 1, maxLength: 60 }),
  })
  .map(({ prevWh, prevExportWh, t, steps }) => {
    let reg = prevWh;
    let exp = prevExportWh;
    let time = t;
    const readings = steps.map(([e, period, gap, reset, x]) => {
      reg = reset ? e : reg + e;
      exp = reset ? x : exp + x;
      const r = { time, period, importWh: reg, powerW: e, status: reset ? 4 : 0, exportWh: exp };
      time += period + gap;
      return r;
    });
    return { how: 'valid', bytes: encodeReadingBatch({ prevWh, prevExportWh, readings }) };
  });

export const batchTarget: FuzzTarget<BytesInput> = {
  name: 'batch',
  what: 'decodeReadingBatch against §5 (ranges, flags, time order, register monotony)',
  weight: 14,
  async: false,
  async open() {
    const batches = [
      batchOf(1, T0, 0),
      batchOf(15, T0, 1_234_567),
      batchOf(60, T0, 2 ** 48 - 100_000),
      { prevWh: 98765, readings: [{ time: T0, period: 900, importWh: 40, powerW: 160, status: 6 }] },
      { prevWh: 98765, prevExportWh: 500, readings: [{ time: T0, period: 900, importWh: 98770, powerW: 20, status: 0, exportWh: 620 }] },
    ];
    let readings = 0;
    return {
      arbitrary: bytesArb(batches.map(encodeReadingBatch), batches.map(batchTree), [batchRecordArb, validBatchArb, validBatchArb]),
      show: (i) => `${i.how} ${hex(i.bytes)}`,
      figures: () => ({ readingsAccepted: readings }),
      run({ bytes }): Verdict {
        const ref = refDecode(bytes);
        const spec = ref.ok && specBatch(ref.value);
        let b: ReadingBatch | undefined;
        try {
          b = decodeReadingBatch(bytes);
        } catch (e) {
          expectTypeError(e, 'decodeReadingBatch');
        }
        if (!!b !== spec) throw new Violation(`decodeReadingBatch ${b ? 'accepted' : 'rejected'}, §5 says ${spec ? 'valid' : 'invalid'}`);
        if (!b) return 'rejected';
        const r = (ref as { value: RefValue[] }).value;
        const long = r.length === 3;
        const decoded = [b.prevWh, b.readings.map((x) => [x.time, x.period, x.importWh, x.powerW, x.status, ...(long ? [x.exportWh] : [])]), ...(long ? [b.prevExportWh] : [])];
        if (!sameValue(decoded, r)) throw new Violation('decoded values differ from the bytes');
        let resetAt = -1;
        b.readings.forEach((x, i) => x.status & 4 && (resetAt = i));
        const last = b.readings[b.readings.length - 1]!;
        for (const [e, base, end] of [
          [readingEnergies(b), b.prevWh, last.importWh],
          [readingExports(b), b.prevExportWh ?? 0, last.exportWh ?? 0],
        ] as const) {
          if (e.some((x) => !Number.isSafeInteger(x) || x < 0)) throw new Violation('negative or non-integer energy');
          const sum = e.slice(Math.max(0, resetAt)).reduce((s, x) => s + x, 0);
          if (sum !== end - (resetAt < 0 ? base : 0)) throw new Violation('energies do not add up to the register delta');
        }
        readings += b.readings.length;
        return 'accepted';
      },
      close() {},
    };
  },
};

// ---------------------------------------------------------------------------------------------------------
// uplink: decodeUplink

export const uplinkTarget: FuzzTarget<BytesInput> = {
  name: 'uplink',
  what: 'decodeUplink against §9 (version, gateway id syntax, 1..1024 byte-string frames)',
  weight: 12,
  async: false,
  async open() {
    const m = testMeter(11);
    const f = encodeFrame(sealFrame(m.key, { systemTitle: m.st, sc: SC_AES256GCM, ic: 3 }, encodeReadingBatch(batchOf(3, T0, 9))));
    const seeds = [encodeUplink({ gateway: 'gw-nb1', frames: [f] }), encodeUplink({ gateway: 'g', frames: [f, f, Uint8Array.of(1)] })];
    const trees = [uplinkTree('gw-nb1', [f]), uplinkTree('x'.repeat(64), [f, f]), uplinkTree('gw.a_b-9', [Uint8Array.of(0)])];
    const many = fc
      .record({ n: fc.constantFrom(0, 1, 1023, 1024, 1025, 4096), gw: fc.constantFrom('gw-nb1', 'x'.repeat(64), 'x'.repeat(65), 'gw/nb1', 'gw+', '#', '', 'gw-nb1\u0000') })
      .map(({ n, gw }) => ({ how: `frames=${n}`, bytes: encodeNode(C.array(C.uint(1), C.text(gw), { k: 'array', v: Array.from({ length: n }, () => C.bytes(Uint8Array.of(1))) })) }));
    return {
      arbitrary: bytesArb(seeds, trees, [many]),
      show: (i) => `${i.how} ${hex(i.bytes).slice(0, 600)}`,
      run({ bytes }): Verdict {
        const ref = refDecode(bytes);
        const spec = ref.ok ? specUplink(ref.value) : null;
        let u: ReturnType<typeof decodeUplink> | undefined;
        try {
          u = decodeUplink(bytes);
        } catch (e) {
          expectTypeError(e, 'decodeUplink');
        }
        if (!!u !== !!spec) throw new Violation(`decodeUplink ${u ? 'accepted' : 'rejected'}, §9 says ${spec ? 'valid' : 'invalid'}`);
        if (u && !sameValue([u.gateway, u.frames], [spec!.gateway, spec!.frames])) throw new Violation('decoded values differ from the bytes');
        return u ? 'accepted' : 'rejected';
      },
      close() {},
    };
  },
};

// ---------------------------------------------------------------------------------------------------------
// seal: openAggregate, openStream

interface Sealed {
  kind: 'agg' | 'stream';
  topic: string;
  payload: Buffer;
  body: unknown;
  /** The envelope as values (what must match for an opened message to be authentic). */
  envelope: RefValue;
}

interface SealInput {
  seed: number;
  topic: number;
  how: string;
  bytes: Uint8Array;
}

/** Envelope edits that an attacker would try: another key's kid, another seal's parts, truncated or extended tags. */
function spliceArb(sealed: Sealed[], otherKid: Buffer): fc.Arbitrary<{ seed: number; how: string; bytes: Uint8Array }> {
  return fc.record({ seed: fc.nat({ max: sealed.length - 1 }), donor: fc.nat({ max: sealed.length - 1 }), field: fc.nat({ max: 5 }), cut: fc.integer({ min: 1, max: 17 }), op: fc.constantFrom('swap', 'kid', 'truncate', 'extend', 'zero-iv', 'type') }).map(({ seed, donor, field, cut, op }) => {
    const a = [...((cborDecode(sealed[seed]!.payload) as unknown[]) ?? [])];
    const b = cborDecode(sealed[donor]!.payload) as unknown[];
    const last = a.length - 1;
    if (op === 'swap') {
      const i = 1 + (field % last);
      if (i < b.length) a[i] = b[i];
    } else if (op === 'kid') a[1] = otherKid;
    else if (op === 'truncate') a[last] = (a[last] as Uint8Array).subarray(0, Math.max(0, (a[last] as Uint8Array).length - cut));
    else if (op === 'extend') a[last] = Buffer.concat([a[last] as Uint8Array, Buffer.alloc(cut)]);
    else if (op === 'zero-iv') a[last - 1] = Buffer.alloc(12);
    else a[0] = a[0] === 1 ? 2 : 1;
    return { seed, how: `splice:${op}`, bytes: cborEncode(a) };
  });
}

/**
 * The `seal` target (see the table at the top).
 * @example
 * ```ts
 * await runTarget(sealTarget({ rsaBits: 2048 }), { runs: 10_000, seed: 1 });
 * ```
 */
export function sealTarget(o: TargetOptions = {}): FuzzTarget<SealInput> {
  return {
    name: 'seal',
    what: 'openAggregate / openStream (shared key cache) on mutated, spliced and re-topiced envelopes',
    weight: 3,
    async: false,
    async open() {
      const bits = o.rsaBits ?? 2048;
      const mdms = generateKeyPairSync('rsa', { modulusLength: bits });
      const hh = generateKeyPairSync('rsa', { modulusLength: bits });
      const other = generateKeyPairSync('rsa', { modulusLength: bits });
      const pes = generateKeyPairSync('ed25519');
      const sealed: Sealed[] = [];
      const agg = (topic: string, body: unknown) => {
        const payload = sealAggregate(mdms.publicKey, topic, body, pes.privateKey);
        sealed.push({ kind: 'agg', topic, payload, body, envelope: (refDecode(payload) as { value: RefValue }).value });
      };
      agg(topics.neighbourhood('nb1'), { kind: 'neighbourhood', key: 'nb1', start: T0, end: T0 + 900, revision: 0, meters: 20, energyWh: 2345 });
      agg(topics.neighbourhood('nb2'), { kind: 'neighbourhood', key: 'nb2', start: T0, end: T0 + 900, revision: 0, meters: 20, energyWh: 999 });
      agg(topics.billing('hh1'), { kind: 'billing', key: 'hh1', start: T0, end: T0 + 86400, revision: 1, bands: { flat: 1234 } });
      for (const epoch of [19675, 19676]) {
        const sk = newStreamKey(hh.publicKey, epoch, topics.household('hh1'), pes.privateKey);
        for (const n of [1, 2]) {
          const topic = topics.household('hh1');
          const body = { meter: '534d5200000003e9', prevWh: n, readings: [[epoch * 86400, 900, n + 10, 40, 0]] };
          const payload = sealStream(sk, topic, body);
          sealed.push({ kind: 'stream', topic, payload, body, envelope: (refDecode(payload) as { value: RefValue }).value });
        }
      }
      const topicList = [...new Set(sealed.map((s) => s.topic)), topics.household('hh2'), topics.billing('nb1'), `${topics.neighbourhood('nb1')}/`, 'sm/v1/agg/neighbourhood/NB1', ''];
      const cache = new Map<string, Buffer>();
      let equivalent = 0;
      const inputArb: fc.Arbitrary<SealInput> = fc.oneof(
        { weight: 4, arbitrary: fc.tuple(fc.nat({ max: sealed.length - 1 }), fc.nat({ max: topicList.length - 1 }), mutationArb).map(([seed, topic, mu]) => ({ seed, topic, how: 'mutated', bytes: mutateBytes(sealed[seed]!.payload, mu) })) },
        {
          weight: 3,
          arbitrary: fc.tuple(fc.nat({ max: sealed.length - 1 }), fc.array(treeEditArb, { minLength: 1, maxLength: 2 })).map(([seed, edits]) => {
            const env = sealed[seed]!.envelope as RefValue[];
            const tree = C.array(...env.map((x) => (typeof x === 'number' ? C.uint(x) : C.bytes(x as Uint8Array))));
            return { seed, topic: topicList.indexOf(sealed[seed]!.topic), how: 'tree', bytes: encodeNode(edits.reduce(applyEdit, tree)) };
          }),
        },
        { weight: 2, arbitrary: fc.tuple(spliceArb(sealed, Buffer.from(hex(Buffer.alloc(8, 0xab)), 'hex')), fc.boolean()).map(([s, same]) => ({ ...s, topic: same ? topicList.indexOf(sealed[s.seed]!.topic) : (s.seed + 1) % topicList.length })) },
        { weight: 1, arbitrary: fc.tuple(fc.nat({ max: sealed.length - 1 }), fc.nat({ max: topicList.length - 1 })).map(([seed, topic]) => ({ seed, topic, how: 'moved', bytes: sealed[seed]!.payload })) },
        { weight: 1, arbitrary: fc.tuple(fc.nat({ max: sealed.length - 1 }), anyNodeArb).map(([seed, n]) => ({ seed, topic: 0, how: 'any-cbor', bytes: encodeNode(n) })) },
      );
      return {
        arbitrary: inputArb,
        show: (i) => `${i.how} seed=${i.seed} topic=${topicList[i.topic]} ${hex(i.bytes).slice(0, 400)}`,
        figures: () => ({ equivalentEncodingsOpened: equivalent, originals: sealed.length }),
        run(input): Verdict {
          const topic = topicList[input.topic]!;
          const kind = sealed[input.seed]!.kind;
          let body: unknown;
          try {
            body = kind === 'agg' ? openAggregate(mdms.privateKey, topic, input.bytes, pes.publicKey) : openStream(hh.privateKey, pes.publicKey, topic, input.bytes, cache);
          } catch (e) {
            if (!(e instanceof Error) || e.message.length === 0) throw e;
            return 'rejected';
          }
          // Opened: it must be one of the originals sealed for this very topic, as values, with its body.
          const ref = refDecode(input.bytes);
          const match = ref.ok && sealed.find((s) => s.kind === kind && s.topic === topic && sameValue(s.envelope, ref.value));
          if (!match || !sameValue(body, match.body)) return 'forged';
          if (!Buffer.from(input.bytes).equals(match.payload)) equivalent++;
          return 'accepted';
        },
        close() {},
      };
    },
  };
}

/**
 * The household app's stream opener (ucs/web/seal.ts, WebCrypto — the code that runs in the browser), fed the
 * same kinds of envelopes as the seal target, with one long-lived opener (and so one key cache).
 * @example
 * ```ts
 * await runTarget(ucsStreamTarget({ rsaBits: 2048 }), { runs: 10_000, seed: 1 });
 * ```
 */
export function ucsStreamTarget(o: TargetOptions = {}): FuzzTarget<SealInput> {
  return {
    name: 'ucs-stream',
    what: "the browser stream opener (ucs/web/seal.ts StreamOpener, WebCrypto) on mutated, spliced and re-topiced stream envelopes, the PES's and the meter's (end-to-end mode)",
    weight: 2,
    async: true,
    async open() {
      const { StreamOpener, importPesVerifyKey, importStreamKey } = await import('../../ucs/web/seal.js');
      const hh = generateKeyPairSync('rsa', { modulusLength: o.rsaBits ?? 2048 });
      const pes = generateKeyPairSync('ed25519');
      const sealed: Sealed[] = [];
      for (const epoch of [19675, 19676]) {
        // One epoch key per topic: the PES signs each (topic, epoch) once.
        const sks = new Map([topics.household('hh1'), topics.household('hh2')].map((t) => [t, newStreamKey(hh.publicKey, epoch, t, pes.privateKey)]));
        for (const n of [1, 2, 3]) {
          const topic = topics.household(n === 3 ? 'hh2' : 'hh1');
          const sk = sks.get(topic)!;
          const body = { meter: '534d5200000003e9', prevWh: n, readings: [[epoch * 86400, 900, n + 10, 40, 0]] };
          const payload = sealStream(sk, topic, body);
          sealed.push({ kind: 'stream', topic, payload, body, envelope: (refDecode(payload) as { value: RefValue }).value });
        }
      }
      // The end-to-end mode's meter-sealed messages (docs/protocol.md §11.5), under hh1's stream key.
      const streamKey = randomBytes(32);
      for (const ic of [7, 8]) {
        const topic = topics.household('hh1');
        const body = { meter: '534d5200000003e9', prevWh: ic, readings: [[19675 * 86400 + ic * 900, 900, ic + 10, 40, 0]] };
        const payload = sealMeterStream(streamKey, topic, Buffer.from('534d5200000003e9', 'hex'), ic, body);
        sealed.push({ kind: 'stream', topic, payload, body, envelope: (refDecode(payload) as { value: RefValue }).value });
      }
      const pkcs8 = hh.privateKey.export({ type: 'pkcs8', format: 'der' });
      const key = await crypto.subtle.importKey('pkcs8', pkcs8, { name: 'RSA-OAEP', hash: 'SHA-256' }, false, ['decrypt']);
      const opener = new StreamOpener(key, keyIdOf(hh.publicKey), await importPesVerifyKey(pes.publicKey.export({ type: 'spki', format: 'der' })), await importStreamKey(streamKey));
      const topicList = [topics.household('hh1'), topics.household('hh2'), topics.household('hh3'), `${topics.household('hh1')}/`, topics.neighbourhood('hh1')];
      let equivalent = 0;
      const inputArb: fc.Arbitrary<SealInput> = fc.oneof(
        { weight: 4, arbitrary: fc.tuple(fc.nat({ max: sealed.length - 1 }), fc.nat({ max: topicList.length - 1 }), fc.boolean(), mutationArb).map(([seed, topic, own, mu]) => ({ seed, topic: own ? topicList.indexOf(sealed[seed]!.topic) : topic, how: 'mutated', bytes: mutateBytes(sealed[seed]!.payload, mu) })) },
        {
          weight: 3,
          arbitrary: fc.tuple(fc.nat({ max: sealed.length - 1 }), fc.array(treeEditArb, { minLength: 1, maxLength: 2 })).map(([seed, edits]) => {
            const env = sealed[seed]!.envelope as RefValue[];
            const tree = C.array(...env.map((x) => (typeof x === 'number' ? C.uint(x) : C.bytes(x as Uint8Array))));
            return { seed, topic: topicList.indexOf(sealed[seed]!.topic), how: 'tree', bytes: encodeNode(edits.reduce(applyEdit, tree)) };
          }),
        },
        { weight: 2, arbitrary: fc.tuple(spliceArb(sealed, Buffer.alloc(8, 0xab)), fc.boolean()).map(([s, same]) => ({ ...s, topic: same ? topicList.indexOf(sealed[s.seed]!.topic) : (s.seed + 1) % topicList.length })) },
        { weight: 1, arbitrary: fc.tuple(fc.nat({ max: sealed.length - 1 }), fc.nat({ max: topicList.length - 1 })).map(([seed, topic]) => ({ seed, topic, how: 'moved', bytes: sealed[seed]!.payload })) },
      );
      return {
        arbitrary: inputArb,
        show: (i) => `${i.how} seed=${i.seed} topic=${topicList[i.topic]} ${hex(i.bytes).slice(0, 400)}`,
        figures: () => ({ equivalentEncodingsOpened: equivalent, unwraps: opener.unwraps }),
        async run(input): Promise<Verdict> {
          const topic = topicList[input.topic]!;
          let body: unknown;
          try {
            body = await opener.open(topic, input.bytes);
          } catch (e) {
            if (!(e instanceof Error) || e.name !== 'OpenError') throw e;
            return 'rejected';
          }
          const ref = refDecode(input.bytes);
          const match = ref.ok && sealed.find((s) => s.topic === topic && sameValue(s.envelope, ref.value));
          if (!match || !sameValue(body, match.body)) return 'forged';
          if (!Buffer.from(input.bytes).equals(match.payload)) equivalent++;
          return 'accepted';
        },
        close() {},
      };
    },
  };
}

// ---------------------------------------------------------------------------------------------------------
// pes: the PES's MQTT handler on a live PES

interface Genuine {
  meter: string;
  ic: number;
  bytes: Uint8Array;
  ct: string;
  batch: ReadingBatch;
}

type FramePick =
  | { k: 'next'; meter: number }
  | { k: 'old'; index: number }
  | { k: 'mutated'; index: number; mu: Parameters<typeof mutateBytes>[1] }
  | { k: 'edited'; index: number; edits: Parameters<typeof applyEdit>[1][] }
  | { k: 'relabel'; index: number; to: number }
  | { k: 'other-key'; index: number; key: number }
  | { k: 'ic'; index: number; delta: number }
  | { k: 'truncated-tag'; index: number; cut: number }
  | { k: 'swap-ct'; index: number; donor: number }
  | { k: 'random'; bytes: Uint8Array };

interface PesInput {
  topic: 'own' | 'other-gateway' | 'unexpected' | 'wildcardish';
  picks: FramePick[];
  /** Mutations of the whole uplink after it was built. */
  uplinkMutations: Parameters<typeof mutateBytes>[1] | null;
  uplinkEdits: Parameters<typeof applyEdit>[1][] | null;
  special: 'none' | 'huge' | 'oversize' | 'empty';
}

const PER_FRAME = ['framesOk', 'badTag', 'unknownMeter', 'retiredKey', 'replay', 'duplicateFrame', 'malformedFrame', 'timeBackwards', 'registerDecrease', 'absurdTime', 'tooOld'] as const;

/** A PES, a broker and a fleet of meters with pre-sealed genuine frames; every published household stream message is captured server-side. */
async function openPesRig(o: TargetOptions, clientId: string) {
  const broker: BrokerHandle = await startBroker({ port: 0, logger: silent });
  const bits = o.rsaBits ?? 2048;
  const mdms = generateKeyPairSync('rsa', { modulusLength: bits });
  const households = new Map<string, { privateKey: KeyObject; publicKey: KeyObject }>();
  const meters = Array.from({ length: 8 }, (_, i) => ({ ...testMeter(100 + i), household: `hh${i}`, neighbourhood: `nb${i % 2}` }));
  for (const m of meters) households.set(m.household, generateKeyPairSync('rsa', { modulusLength: bits }));
  const info = new Map<string, MeterInfo>(meters.map((m) => [m.id, { key: m.key, household: m.household, neighbourhood: m.neighbourhood }]));
  const errors: string[] = [];
  const logStream = new Writable({
    write(chunk, _e, cb) {
      const s = String(chunk);
      if (/"level":(50|60)/.test(s) && errors.length < 20) errors.push(s.slice(0, 400));
      cb();
    },
  });
  const paillier = await generatePaillier(o.paillierBits ?? 1024);
  const signing = generateKeyPairSync('ed25519');
  const svc: PesService = startPesService({
    keys: { rsa: generateKeyPairSync('rsa', { modulusLength: 2048 }).privateKey, signer: signing.privateKey, paillier, mdmsPublic: mdms.publicKey, householdPublic: new Map([...households].map(([h, k]) => [h, k.publicKey])), meters: info },
    intervalS: 900,
    latenessS: 60,
    k: 2,
    mqtt: { url: broker.url, clientId },
    logger: pino({ level: 'warn' }, logStream),
  });
  await svc.ready;
  const captured: { topic: string; payload: Buffer }[] = [];
  await new Promise<void>((resolve) =>
    broker.aedes.subscribe(
      'sm/v1/household/#',
      (packet, cb) => {
        captured.push({ topic: packet.topic, payload: Buffer.from(packet.payload as Buffer) });
        cb();
      },
      resolve,
    ),
  );
  let failed: Error | undefined;
  void svc.failed.then((e) => (failed = e));
  let messageId = 0;
  /** Runs one MQTT message through the PES's handler; returns whether it was acknowledged. */
  const deliver = (topic: string, payload: Buffer): boolean => {
    let acked = false;
    const packet = { cmd: 'publish', topic, payload, qos: 1, messageId: (messageId = (messageId % 65535) + 1), dup: false, retain: false } as IPublishPacket;
    svc.client.handleMessage(packet, () => (acked = true));
    if (failed) throw new Error(`PES stopped: ${failed.message}`);
    return acked;
  };
  return {
    broker,
    svc,
    meters,
    households,
    mdms,
    /** The PES's Ed25519 public key: every stream message must verify with it. */
    pesVerify: signing.publicKey,
    captured,
    errors,
    deliver,
    async close() {
      await svc.close();
      await broker.close();
    },
  };
}

/**
 * The `pes` target (see the table at the top).
 * @example
 * ```ts
 * await runTarget(pesTarget({ rsaBits: 2048 }), { runs: 10_000, seed: 1 });
 * ```
 */
export function pesTarget(o: TargetOptions = {}): FuzzTarget<PesInput> {
  return {
    name: 'pes',
    what: 'PES MQTT handler (handleMessage -> ingestUplink -> commit) with uplinks of genuine, replayed, mutated, re-labelled, re-keyed, truncated and random frames',
    weight: 8,
    async: true,
    yieldEvery: 25,
    async open() {
      const rig = await openPesRig(o, 'pes-fuzz');
      const { meters, svc } = rig;
      const perMeter = o.framesPerMeter ?? 250;
      const genuine: Genuine[] = [];
      const byKey = new Map<string, Genuine>();
      const byMeter: Genuine[][] = meters.map(() => []);
      meters.forEach((m, mi) => {
        let reg = 1_000_000 + mi * 77;
        for (let f = 0; f < perMeter; f++) {
          const batch = batchOf(4, T0 + f * 240, reg, 60, (i) => 1 + ((f * 5 + i * 3 + mi) % 17));
          reg = batch.readings[3]!.importWh;
          const ic = f + 1;
          const cf = sealFrame(m.key, { systemTitle: m.st, sc: SC_AES256GCM, ic }, encodeReadingBatch(batch));
          const g = { meter: m.id, ic, bytes: encodeFrame(cf), ct: hex(cf.ciphertext), batch };
          genuine.push(g);
          byMeter[mi]!.push(g);
          byKey.set(`${m.id}:${ic}`, g);
        }
      });
      const cursor = meters.map(() => 0);
      const presented = new Set<string>();
      const gw = 'gw-fz';
      const idx = fc.nat({ max: genuine.length - 1 });
      const pickArb: fc.Arbitrary<FramePick> = fc.oneof(
        { weight: 6, arbitrary: fc.record({ k: fc.constant('next' as const), meter: fc.nat({ max: meters.length - 1 }) }) },
        { weight: 2, arbitrary: fc.record({ k: fc.constant('old' as const), index: idx }) },
        { weight: 3, arbitrary: fc.record({ k: fc.constant('mutated' as const), index: idx, mu: mutationArb }) },
        { weight: 2, arbitrary: fc.record({ k: fc.constant('edited' as const), index: idx, edits: fc.array(treeEditArb, { minLength: 1, maxLength: 2 }) }) },
        { weight: 1, arbitrary: fc.record({ k: fc.constant('relabel' as const), index: idx, to: fc.nat({ max: meters.length }) }) },
        { weight: 1, arbitrary: fc.record({ k: fc.constant('other-key' as const), index: idx, key: fc.nat({ max: meters.length - 1 }) }) },
        { weight: 1, arbitrary: fc.record({ k: fc.constant('ic' as const), index: idx, delta: fc.oneof(fc.constantFrom(1, -1, 1024, -1024, 2 ** 31), fc.integer({ min: -5, max: 5 })) }) },
        { weight: 1, arbitrary: fc.record({ k: fc.constant('truncated-tag' as const), index: idx, cut: fc.integer({ min: 1, max: 12 }) }) },
        { weight: 1, arbitrary: fc.record({ k: fc.constant('swap-ct' as const), index: idx, donor: idx }) },
        { weight: 1, arbitrary: fc.record({ k: fc.constant('random' as const), bytes: fc.uint8Array({ maxLength: 120 }) }) },
      );
      const arbitrary: fc.Arbitrary<PesInput> = fc.record({
        topic: fc.constantFrom('own', 'own', 'own', 'own', 'own', 'own', 'other-gateway', 'unexpected', 'wildcardish'),
        picks: fc.array(pickArb, { minLength: 1, maxLength: 6 }),
        uplinkMutations: fc.option(mutationArb, { freq: 6 }),
        uplinkEdits: fc.option(fc.array(treeEditArb, { minLength: 1, maxLength: 2 }), { freq: 8 }),
        special: fc.constantFrom('none', 'none', 'none', 'none', 'none', 'none', 'none', 'none', 'none', 'none', 'none', 'none', 'none', 'none', 'none', 'none', 'none', 'huge', 'oversize', 'empty'),
      });
      const oversize = Buffer.concat([Buffer.from([0x83, 0x01, 0x65, ...Buffer.from('gw-fz'), 0x99, 0x04, 0x00]), ...Array.from({ length: 1024 }, () => Buffer.concat([Buffer.from([0x59, 0x08, 0x40]), Buffer.alloc(2112, 7)]))]);

      const frameOf = (p: FramePick): Uint8Array => {
        const g = 'index' in p ? genuine[p.index]! : undefined;
        const d = g ? decodeFrame(g.bytes) : undefined;
        switch (p.k) {
          case 'next': {
            const list = byMeter[p.meter]!;
            const i = Math.min(cursor[p.meter]!, list.length - 1);
            cursor[p.meter] = i + 1;
            return list[i]!.bytes;
          }
          case 'old':
            return g!.bytes;
          case 'mutated':
            return mutateBytes(g!.bytes, p.mu);
          case 'edited':
            return encodeNode(p.edits.reduce(applyEdit, frameTree(d!.systemTitle, d!.sc, d!.ic, d!.ciphertext)));
          case 'relabel':
            return encodeFrame({ ...d!, systemTitle: p.to === meters.length ? systemTitle('SMR', 9999) : meters[p.to]!.st });
          case 'other-key': {
            // the genuine batch of meter A sealed under meter B's key, with A's system title and counter
            const m = meters[p.key]!;
            return encodeFrame(sealFrame(m.key, { systemTitle: d!.systemTitle, sc: SC_AES256GCM, ic: d!.ic }, encodeReadingBatch(g!.batch)));
          }
          case 'ic':
            return encodeFrame({ ...d!, ic: Math.min(0xffffffff, Math.max(0, d!.ic + p.delta)) });
          case 'truncated-tag':
            return encodeFrame({ ...d!, ciphertext: d!.ciphertext.subarray(0, Math.max(12, d!.ciphertext.length - p.cut)) });
          case 'swap-ct':
            return encodeFrame({ ...d!, ciphertext: decodeFrame(genuine[p.donor]!.bytes).ciphertext });
          case 'random':
            return p.bytes;
        }
      };
      /** The genuine frame these bytes carry, by value (the reference decoder and §6), or undefined. */
      const genuineOf = (f: Uint8Array): Genuine | undefined => {
        const r = refDecode(f);
        if (!r.ok || specMessage(r.value) !== 'frame') return undefined;
        const a = r.value as RefValue[];
        const g = byKey.get(`${hex(a[2] as Uint8Array)}:${a[4] as number}`);
        return g && g.ct === hex(a[5] as Uint8Array) ? g : undefined;
      };
      let unexpected = 0;
      return {
        arbitrary,
        show: (i) => JSON.stringify(i, (_k, v: unknown) => (v instanceof Uint8Array ? hex(v) : typeof v === 'bigint' ? `${v}n` : v)).slice(0, 900),
        figures: () => ({ ...svc.pes.counters, genuineFrames: genuine.length, genuinePresented: presented.size, streamMessagesCaptured: rig.captured.length }),
        run(input): Verdict {
          const frames = input.picks.map(frameOf);
          let payload: Buffer;
          if (input.special === 'huge') payload = Buffer.concat([Buffer.from([0x83, 0x01, 0x65, ...Buffer.from(gw), 0x9b]), Buffer.alloc(8, 0xff), Buffer.from(frames[0]!)]);
          else if (input.special === 'oversize') payload = oversize;
          else if (input.special === 'empty') payload = Buffer.alloc(0);
          else if (input.uplinkEdits) payload = Buffer.from(encodeNode(input.uplinkEdits.reduce(applyEdit, uplinkTree(gw, frames))));
          else payload = encodeUplink({ gateway: gw, frames });
          if (input.uplinkMutations) payload = mutateBytes(payload, input.uplinkMutations);
          const topic = input.topic === 'own' ? topics.frames(gw) : input.topic === 'other-gateway' ? topics.frames('gw-other') : input.topic === 'unexpected' ? topics.neighbourhood('nb0') : 'sm/v1/frames/';

          // What the spec says should happen, from the bytes alone.
          const ref = refDecode(payload);
          const up = ref.ok ? specUplink(ref.value) : null;
          // The PES routes by prefix: anything under sm/v1/frames/ is an uplink, and one whose topic level is not
          // its gateway id is malformed.
          const framesTopic = topic.startsWith('sm/v1/frames/');
          const valid = framesTopic && up !== null && payload.length <= 1024 * 2048 + 1024 && up.gateway === topic.slice('sm/v1/frames/'.length);
          const fresh = new Map<string, Genuine>();
          if (valid) for (const f of up.frames) {
            const g = genuineOf(f);
            if (g && !presented.has(`${g.meter}:${g.ic}`)) fresh.set(`${g.meter}:${g.ic}`, g);
          }

          const c = svc.pes.counters;
          const before = { ...c };
          const unexpectedBefore = svc.unexpected;
          const acked = rig.deliver(topic, payload);
          if (!acked) throw new Violation('message not acknowledged although the PES did not fail');
          const d = (k: keyof typeof c) => c[k] - before[k];
          for (const k of fresh.keys()) presented.add(k);
          if (!framesTopic) {
            unexpected++;
            if (svc.unexpected !== unexpectedBefore + 1 || PER_FRAME.some((k) => d(k) !== 0)) throw new Violation('a message on an unexpected topic was not counted as unexpected, or was processed');
            return 'rejected';
          }
          if (!valid) {
            if (d('malformedUplink') !== 1 || PER_FRAME.some((k) => d(k) !== 0)) throw new Violation(`an uplink §9 refuses was not counted once as malformed (malformedUplink +${d('malformedUplink')})`);
            return 'rejected';
          }
          const counted = PER_FRAME.reduce((s, k) => s + d(k), 0);
          if (d('malformedUplink') !== 0 || counted !== up.frames.length) throw new Violation(`${up.frames.length} frames but ${counted} per-frame counts`);
          const maxReadings = [...fresh.values()].reduce((s, g) => s + g.batch.readings.length, 0);
          if (d('framesOk') > fresh.size || d('readings') > maxReadings) return 'forged';
          return d('framesOk') > 0 ? 'accepted' : 'rejected';
        },
        async finish() {
          const problems: string[] = [];
          await svc.pes.idle();
          const want = svc.pes.counters.streamMessages;
          for (let t = 0; rig.captured.length < want && t < 400; t++) await new Promise((r) => setTimeout(r, 25));
          if (rig.captured.length !== want) problems.push(`${want} stream messages queued, ${rig.captured.length} published`);
          if (svc.pes.counters.framesOk !== want) problems.push(`framesOk ${svc.pes.counters.framesOk} != stream messages ${want} (every household has a key)`);
          // Every published reading is a genuine batch of that household's meter, each at most once.
          const seen = new Set<string>();
          const caches = new Map<string, Map<string, Buffer>>();
          for (const m of rig.captured) {
            const hh = m.topic.split('/')[3]!;
            const keys = rig.households.get(hh);
            if (!keys) {
              problems.push(`stream on unknown topic ${m.topic}`);
              continue;
            }
            if (!caches.has(hh)) caches.set(hh, new Map());
            const body = openStream(keys.privateKey, rig.pesVerify, m.topic, m.payload, caches.get(hh)) as { meter: string; prevWh: number; readings: number[][] };
            const g = genuine.find((x) => x.meter === body.meter && x.batch.prevWh === body.prevWh && x.batch.readings[0]!.time === body.readings[0]![0]);
            const meter = meters.find((x) => x.id === body.meter);
            if (!g || meter?.household !== hh || !sameValue(body.readings, g.batch.readings.map((r) => [r.time, r.period, r.importWh, r.powerW, r.status]))) {
              problems.push(`forged reading published on ${m.topic}`);
              continue;
            }
            const k = `${g.meter}:${g.ic}`;
            if (seen.has(k)) problems.push(`frame ${k} folded twice`);
            seen.add(k);
          }
          if (rig.errors.length) problems.push(...rig.errors.map((e) => `error logged: ${e}`));
          if (svc.pes.counters.negativeTotal) problems.push(`negativeTotal ${svc.pes.counters.negativeTotal}`);
          return problems;
        },
        close: () => rig.close(),
      };
    },
  };
}

// ---------------------------------------------------------------------------------------------------------
// household-key: the PES's handler of household public keys

interface KeyInput {
  topic: string;
  how: string;
  payload: Uint8Array;
}

/**
 * The `householdKey` target (see the table at the top).
 * @example
 * ```ts
 * await runTarget(householdKeyTarget({ rsaBits: 2048 }), { runs: 10_000, seed: 1 });
 * ```
 */
export function householdKeyTarget(o: TargetOptions = {}): FuzzTarget<KeyInput> {
  return {
    name: 'household-key',
    what: 'PES MQTT handler on household-key topics: unproven (v1) and mutated key messages, weak and non-RSA keys, wrong household, bad topics: none binds a key',
    weight: 3,
    async: true,
    yieldEvery: 25,
    async open() {
      const rig = await openPesRig({ ...o, framesPerMeter: 0 }, 'pes-hk-fuzz');
      const hhs = [...rig.households.keys()];
      const der = (k: KeyObject) => k.export({ type: 'spki', format: 'der' });
      const keys = {
        rsa2048: der(generateKeyPairSync('rsa', { modulusLength: 2048 }).publicKey),
        rsa1024: der(generateKeyPairSync('rsa', { modulusLength: 1024 }).publicKey),
        ec: der(generateKeyPairSync('ec', { namedCurve: 'P-256' }).publicKey),
        ed25519: der(generateKeyPairSync('ed25519').publicKey),
        rsaPss: der(generateKeyPairSync('rsa-pss', { modulusLength: 2048 }).publicKey),
      };
      const spkiList = Object.values(keys);
      const topicArb = fc.oneof(
        { weight: 8, arbitrary: fc.constantFrom(...hhs).map((h) => topics.householdKey(h)) },
        { weight: 1, arbitrary: fc.constantFrom('sm/v1/pes/household-key/hh-unknown', 'sm/v1/pes/household-key/', 'sm/v1/pes/household-key/+', 'sm/v1/pes/household-key/hh0/x', 'sm/v1/pes/household-key/hh0 ', 'sm/v1/pes/household-keyhh0', 'sm/v1/pes/household-key/__proto__', 'sm/v1/pes/household-key/constructor') },
      );
      const msg = (hh: string, spki: Uint8Array) => encodeNode(C.array(C.uint(1), C.text(hh), C.bytes(spki)));
      const payloadArb = fc.oneof(
        { weight: 3, arbitrary: fc.tuple(fc.constantFrom(...hhs), fc.constantFrom(...spkiList)).map(([h, k]) => ({ how: 'key', hh: h, payload: msg(h, k) })) },
        { weight: 4, arbitrary: fc.tuple(fc.constantFrom(...hhs), fc.constantFrom(...spkiList), mutationArb).map(([h, k, mu]) => ({ how: 'mutated-spki', hh: h, payload: msg(h, mutateBytes(k, mu)) })) },
        { weight: 2, arbitrary: fc.tuple(fc.constantFrom(...hhs), fc.constantFrom(...spkiList), fc.array(treeEditArb, { minLength: 1, maxLength: 2 })).map(([h, k, e]) => ({ how: 'tree', hh: h, payload: encodeNode(e.reduce(applyEdit, C.array(C.uint(1), C.text(h), C.bytes(k)))) })) },
        { weight: 1, arbitrary: fc.tuple(fc.constantFrom(...hhs), mutationArb).map(([h, mu]) => ({ how: 'mutated', hh: h, payload: mutateBytes(msg(h, keys.rsa2048), mu) })) },
        { weight: 1, arbitrary: fc.constantFrom(...hhs).map((h) => ({ how: 'withdraw', hh: h, payload: new Uint8Array(0) })) },
        { weight: 1, arbitrary: fc.uint8Array({ maxLength: 80 }).map((payload) => ({ how: 'random', hh: '', payload })) },
        { weight: 1, arbitrary: fc.tuple(fc.constantFrom(...hhs), fc.constantFrom(...HUGE_LENGTHS)).map(([h, n]) => ({ how: 'huge', hh: h, payload: encodeNode(C.array(C.uint(1), C.text(h), { k: 'bytes', v: keys.rsa2048.subarray(0, 30), lie: n })) })) },
      );
      const arbitrary = fc.tuple(topicArb, payloadArb, fc.boolean()).map(([topic, p, own]) => ({ topic: own && p.hh ? topics.householdKey(p.hh) : topic, how: p.how, payload: p.payload }));
      let accepted = 0;
      return {
        arbitrary,
        show: (i) => `${i.how} ${i.topic} ${hex(i.payload).slice(0, 600)}`,
        figures: () => ({ keysAccepted: accepted, householdKeys: rig.svc.pes.counters.householdKeys, badHouseholdKey: rig.svc.pes.counters.badHouseholdKey }),
        run({ topic, payload }): Verdict {
          // §10.1, independently: on its own household's topic, only a withdrawal (empty payload) takes effect.
          // Every key message here is version 1 or a mutation of one: none carries the activation MAC or the
          // new key's signature, so none may bind a key (the probe's attack; valid bindings are tested in
          // test/pes/household-binding.test.ts).
          const prefix = 'sm/v1/pes/household-key/';
          const hh = topic.startsWith(prefix) ? topic.slice(prefix.length) : '';
          const expect = TOPIC_ID.test(hh) && rig.households.has(hh) && payload.length === 0;
          const c = rig.svc.pes.counters;
          const before = { ok: c.householdKeys, bad: c.badHouseholdKey, unexpected: rig.svc.unexpected };
          if (!rig.deliver(topic, Buffer.from(payload))) throw new Violation('household key message not acknowledged');
          const ok = c.householdKeys - before.ok;
          const bad = c.badHouseholdKey - before.bad;
          const counted = ok + bad + (rig.svc.unexpected - before.unexpected);
          const withdrawn = payload.length === 0 && expect;
          if (!withdrawn && counted !== 1) throw new Violation(`household key message counted ${counted} times`);
          const got = withdrawn || ok === 1;
          if (got !== expect) return got ? 'forged' : (() => { throw new Violation(`a valid household key was refused (${topic})`); })();
          if (got) accepted++;
          return got ? 'accepted' : 'rejected';
        },
        async finish() {
          return rig.errors.map((e) => `error logged: ${e}`);
        },
        close: () => rig.close(),
      };
    },
  };
}

// ---------------------------------------------------------------------------------------------------------
// mdms: the MDMS ingest handler

interface MdmsInput {
  how: string;
  topic: string;
  payload: Uint8Array;
  /** Index of the genuine seal this input derives from (-1: none). */
  seed: number;
  /** A body sealed with the MDMS public key by someone who is not the PES (valid seal, arbitrary body). */
  attacker: boolean;
}

/** §11.3 bodies and the MDMS policy, independently: what may be stored. */
function storableBody(topic: string, body: unknown, k: number, minBillingS: number): boolean {
  const m = /^sm\/v1\/agg\/(neighbourhood|billing)\/([A-Za-z0-9_.-]{1,64})$/.exec(topic);
  if (!m || typeof body !== 'object' || body === null || Array.isArray(body) || body instanceof Uint8Array) return false;
  const o = body as Record<string, unknown>;
  if (Object.getPrototypeOf(o) !== Object.prototype && Object.getPrototypeOf(o) !== null) return false;
  const int = (v: unknown, max = Number.MAX_SAFE_INTEGER, min = 0) => typeof v === 'number' && Number.isSafeInteger(v) && v >= min && v <= max;
  const keys = Object.keys(o).sort().join(',');
  const common = o.kind === m[1] && o.key === m[2] && int(o.start, 253_402_300_799) && int(o.end, 253_402_300_799) && (o.end as number) > (o.start as number) && int(o.revision, 2 ** 31 - 1);
  if (!common) return false;
  const wh = (v: unknown) => int(v, Number.MAX_SAFE_INTEGER, -Number.MAX_SAFE_INTEGER);
  // Optional fields of version 2 (§11.3): present means checked, absent means 0 / none.
  const without = (...optional: string[]) => Object.keys(o).filter((f) => !optional.includes(f)).sort().join(',');
  if (m[1] === 'neighbourhood') {
    const eps = (v: unknown, max = 1e6) => typeof v === 'number' && Number.isFinite(v) && v > 0 && v <= max;
    const dp = o.dp as Record<string, unknown> | undefined;
    const dpOk = !('dp' in o) || (typeof dp === 'object' && dp !== null && !Array.isArray(dp) && !(dp instanceof Uint8Array) && Object.keys(dp).sort().join(',') === 'epsilon,spent' && eps(dp.epsilon) && eps(dp.spent, 1e15) && (dp.spent as number) >= (dp.epsilon as number));
    return without('exportWh', 'dp') === 'end,energyWh,key,kind,meters,revision,start' && int(o.meters, 2 ** 31 - 1) && (o.meters as number) >= k && wh(o.energyWh) && (!('exportWh' in o) || wh(o.exportWh)) && dpOk;
  }
  if (without('exportBands') !== 'bands,end,key,kind,revision,start' || (o.end as number) - (o.start as number) < minBillingS) return false;
  const bandMap = (b: unknown, min: number) => {
    if (typeof b !== 'object' || b === null || Array.isArray(b) || b instanceof Uint8Array) return false;
    const names = Object.keys(b);
    return names.length >= min && names.length <= 64 && names.every((n) => /^[A-Za-z0-9_.-]{1,32}$/.test(n) && wh((b as Record<string, unknown>)[n]));
  };
  return bandMap(o.bands, 1) && (!('exportBands' in o) || bandMap(o.exportBands, 0));
}

/**
 * The `mdms` target (see the table at the top).
 * @example
 * ```ts
 * await runTarget(mdmsTarget({ rsaBits: 2048 }), { runs: 10_000, seed: 1 });
 * ```
 */
export function mdmsTarget(o: TargetOptions = {}): FuzzTarget<MdmsInput> {
  return {
    name: 'mdms',
    what: 'MDMS ingest handler (handleMessage -> openAggregate -> parseAggregate -> policy -> store) with genuine, moved, mutated, spliced and key-holder-sealed bodies',
    weight: 3,
    async: true,
    async open() {
      const bits = o.rsaBits ?? 2048;
      const broker = await startBroker({ port: 0, logger: silent });
      const mdms = generateKeyPairSync('rsa', { modulusLength: bits });
      const other = generateKeyPairSync('rsa', { modulusLength: bits });
      const pes = generateKeyPairSync('ed25519');
      const forger = generateKeyPairSync('ed25519');
      const store: Store = await openStore(':memory:');
      const errors: string[] = [];
      const log = pino(
        { level: 'error' },
        new Writable({
          write(chunk, _e, cb) {
            if (errors.length < 20 && !/sealed for another key|not signed by the PES/.test(String(chunk))) errors.push(String(chunk).slice(0, 300));
            cb();
          },
        }),
      );
      const K = 2;
      const MIN_BILLING = 86400;
      const ingest: MdmsIngest = startMdmsIngest({ store, privateKey: mdms.privateKey, pesVerifyKey: pes.publicKey, mqtt: { url: broker.url, clientId: 'mdms-fuzz' }, k: K, minBillingPeriodS: MIN_BILLING, log });
      await ingest.ready;
      const genuine: { topic: string; body: Record<string, unknown>; payload: Buffer; envelope: RefValue }[] = [];
      const add = (topic: string, body: Record<string, unknown>) => {
        const payload = sealAggregate(mdms.publicKey, topic, body, pes.privateKey);
        genuine.push({ topic, body, payload, envelope: (refDecode(payload) as { value: RefValue }).value });
      };
      for (let i = 0; i < 12; i++) {
        add(topics.neighbourhood(`nb${i % 3}`), { kind: 'neighbourhood', key: `nb${i % 3}`, start: T0 + i * 900, end: T0 + (i + 1) * 900, revision: i % 2, meters: i === 5 ? 1 : 20 + i, energyWh: 1000 + i });
        add(topics.billing(`hh${i % 4}`), { kind: 'billing', key: `hh${i % 4}`, start: T0 + i * 86400, end: T0 + (i + 1) * 86400 - (i === 7 ? 86000 : 0), revision: 0, bands: { day: 100 + i, night: 50 + i } });
      }
      const topicList = [...new Set(genuine.map((g) => g.topic)), 'sm/v1/agg/neighbourhood/nb9', 'sm/v1/agg/billing/nb0', 'sm/v1/agg/other/nb0', 'sm/v1/agg/neighbourhood/nb0/x', 'sm/v1/household/hh0/readings', ''];
      const gIdx = fc.nat({ max: genuine.length - 1 });
      const bodyTree = (b: Record<string, unknown>): CNode =>
        C.map(Object.fromEntries(Object.entries(b).map(([k, v]) => [k, typeof v === 'number' ? C.uint(v) : typeof v === 'string' ? C.text(v) : C.map(Object.fromEntries(Object.entries(v as Record<string, number>).map(([a, x]) => [a, C.uint(x)])))])));
      const arbitrary: fc.Arbitrary<MdmsInput> = fc.oneof(
        { weight: 2, arbitrary: gIdx.map((i) => ({ how: 'genuine', topic: genuine[i]!.topic, payload: genuine[i]!.payload, seed: i, attacker: false })) },
        { weight: 2, arbitrary: fc.tuple(gIdx, fc.nat({ max: topicList.length - 1 })).map(([i, t]) => ({ how: 'moved', topic: topicList[t]!, payload: genuine[i]!.payload, seed: i, attacker: false })) },
        { weight: 4, arbitrary: fc.tuple(gIdx, mutationArb).map(([i, mu]) => ({ how: 'mutated', topic: genuine[i]!.topic, payload: mutateBytes(genuine[i]!.payload, mu), seed: i, attacker: false })) },
        {
          weight: 2,
          arbitrary: fc.tuple(spliceArb(genuine.map((g) => ({ kind: 'agg' as const, ...g })), keyIdOf(other.publicKey)), fc.boolean()).map(([s, same]) => ({ how: s.how, topic: same ? genuine[s.seed]!.topic : topicList[(s.seed * 7) % topicList.length]!, payload: s.bytes, seed: s.seed, attacker: false })),
        },
        {
          weight: 3,
          arbitrary: fc.tuple(gIdx, fc.array(treeEditArb, { minLength: 1, maxLength: 3 }), fc.boolean()).map(([i, e, moved]) => {
            const g = genuine[i]!;
            const body = e.reduce(applyEdit, bodyTree(g.body));
            const topic = moved ? topicList[(i * 5 + e.length) % topicList.length]! : g.topic;
            return { how: 'key-holder-body', topic, payload: sealRaw(mdms.publicKey, topic, encodeNode(body), pes.privateKey), seed: -1, attacker: true };
          }),
        },
        { weight: 1, arbitrary: fc.tuple(anyNodeArb, fc.nat({ max: topicList.length - 1 })).map(([n, t]) => ({ how: 'key-holder-any', topic: topicList[t]!, payload: sealRaw(mdms.publicKey, topicList[t]!, encodeNode(n), pes.privateKey), seed: -1, attacker: true })) },
        // Anyone else (a stolen broker password and the public MDMS key): unsigned, or signed with their own key. Never stored.
        {
          weight: 2,
          arbitrary: fc.tuple(gIdx, fc.boolean(), fc.nat({ max: topicList.length - 1 }), fc.boolean()).map(([i, signed, t, moved]) => {
            const topic = moved ? topicList[t]! : genuine[i]!.topic;
            return { how: signed ? 'forger-signed' : 'forger-unsigned', topic, payload: sealRaw(mdms.publicKey, topic, cborEncode(genuine[i]!.body), signed ? forger.privateKey : undefined), seed: -1, attacker: false };
          }),
        },
        { weight: 1, arbitrary: fc.tuple(gIdx, fc.boolean()).map(([i, big]) => ({ how: big ? 'oversize' : 'other-key', topic: genuine[i]!.topic, payload: big ? Buffer.alloc(65 * 1024, 1) : sealAggregate(other.publicKey, genuine[i]!.topic, genuine[i]!.body, pes.privateKey), seed: -1, attacker: false })) },
        { weight: 1, arbitrary: fc.tuple(fc.uint8Array({ maxLength: 200 }), fc.nat({ max: topicList.length - 1 })).map(([b, t]) => ({ how: 'random', topic: topicList[t]!, payload: b, seed: -1, attacker: false })) },
      );
      const c = ingest.counters;
      const OUTCOMES = ['stored', 'duplicates', 'conflicts', 'unsealFailed', 'malformed', 'badSignature', 'rejectedPrivacy', 'rejectedUnknown', 'rejectedNegative', 'rejectedGap', 'policyStored', 'policyIgnored'] as const;
      return {
        arbitrary,
        show: (i) => `${i.how} ${i.topic} ${hex(i.payload).slice(0, 600)}`,
        figures: () => ({ ...c }),
        async run(input): Promise<Verdict> {
          const before = { ...c };
          const packet = { cmd: 'publish', topic: input.topic, payload: Buffer.from(input.payload), qos: 1, messageId: 1, dup: false, retain: false } as IPublishPacket;
          const err = await new Promise<Error | undefined | 'timeout'>((resolve) => {
            const t = setTimeout(() => resolve('timeout'), 10_000);
            ingest.client.handleMessage(packet, (e?: Error) => {
              clearTimeout(t);
              resolve(e);
            });
          });
          if (err === 'timeout') throw new Error('no verdict within 10 s');
          const d = (k: keyof typeof c) => c[k] - before[k];
          const outcomes = OUTCOMES.filter((k) => d(k) > 0);
          if (d('received') !== 1 || outcomes.length !== 1 || d(outcomes[0]!) !== 1) throw new Violation(`one message, counters moved: ${JSON.stringify(Object.fromEntries(OUTCOMES.map((k) => [k, d(k)])))}`);
          if ((outcomes[0] === 'unsealFailed') !== (err !== undefined)) throw new Violation(`${outcomes[0]} but ${err ? 'not ' : ''}acknowledged`);
          if (outcomes[0] !== 'stored') return 'rejected';
          // Stored: either a genuine seal on its own topic (values equal) with a storable body, or a key-holder's valid body.
          const ref = refDecode(input.payload);
          const g = genuine.find((x) => x.topic === input.topic && ref.ok && sameValue(x.envelope, ref.value));
          if (g) return storableBody(input.topic, g.body, K, MIN_BILLING) ? 'accepted' : 'forged';
          if (!input.attacker) return 'forged';
          const body = openAggregate(mdms.privateKey, input.topic, input.payload, pes.publicKey);
          if (!storableBody(input.topic, body, K, MIN_BILLING)) throw new Violation('the MDMS stored a body that §11.3 or its policy refuses');
          return 'accepted';
        },
        async finish() {
          return errors.map((e) => `error logged: ${e}`);
        },
        async close() {
          await ingest.close();
          await store.close();
          await broker.close();
        },
      };
    },
  };
}

function keyIdOf(pub: KeyObject): Buffer {
  return (cborDecode(sealAggregate(pub, 'x', 0, generateKeyPairSync('ed25519').privateKey)) as [number, Buffer])[1];
}

/**
 * An aggregate seal around arbitrary CBOR body bytes (what anyone holding the MDMS public key can make),
 * signed by `signer` over §11.1's signed bytes, or unsigned (five elements) without one.
 */
function sealRaw(pub: KeyObject, topic: string, body: Uint8Array, signer?: KeyObject): Buffer {
  // sealAggregate takes a value and encodes it itself; raw (possibly non-plain) CBOR needs the §11.1 steps by hand.
  const kid = createHash('sha256').update(pub.export({ type: 'spki', format: 'der' })).digest().subarray(0, 8);
  const key = randomBytes(32);
  const iv = randomBytes(12);
  const c = createCipheriv('aes-256-gcm', key, iv);
  c.setAAD(cborEncode([1, topic, kid]));
  const ct = Buffer.concat([c.update(body), c.final(), c.getAuthTag()]);
  const wrapped = publicEncrypt({ key: pub, padding: constants.RSA_PKCS1_OAEP_PADDING, oaepHash: 'sha256' }, key);
  if (!signer) return cborEncode([1, kid, wrapped, iv, ct]);
  return cborEncode([1, kid, wrapped, iv, ct, sign(null, cborEncode([1, topic, kid, wrapped, iv, ct]), signer)]);
}

/**
 * Every target, in the order the script runs them.
 * @example
 * ```ts
 * for (const t of allTargets({ rsaBits: 2048 })) await runTarget(t, { runs: 1000, seed: 1 });
 * ```
 */
export function allTargets(o: TargetOptions = {}): FuzzTarget<never>[] {
  return [linkTarget, messageTarget, batchTarget, uplinkTarget, sealTarget(o), ucsStreamTarget(o), pesTarget(o), householdKeyTarget(o), mdmsTarget(o)] as unknown as FuzzTarget<never>[];
}
