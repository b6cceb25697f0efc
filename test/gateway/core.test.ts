import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { classifyPayload, frameKey, totalCounters } from '../../gateway/core.js';
import { Line } from '../../gateway/line.js';
import { cborEncode } from '../../protocol/cbor.js';
import { encodeAck } from '../../protocol/frame.js';
import { encodeLinkFrame, FLAG, MAX_PAYLOAD } from '../../protocol/link.js';
import { quiet, testMeter } from './helpers.js';

const meter = testMeter(1);

describe('classifyPayload', () => {
  it('passes a ciphered frame through opaque, keyed by meter and invocation counter', () => {
    const bytes = meter.frame(7);
    const c = classifyPayload(bytes);
    expect(c.kind).toBe('frame');
    if (c.kind !== 'frame') return;
    expect(c.frame.bytes).toBe(bytes); // the exact received bytes, not a re-encoding
    expect(c.frame.ic).toBe(7);
    expect(c.frame.key).toBe(frameKey(meter.st, 7));
    expect(c.frame.key).toBe(`${meter.id}:7`);
  });

  it.each([
    ['an ack travelling upstream', encodeAck({ systemTitle: meter.st, ic: 3 })],
    ['a CBOR map', cborEncode({ a: 1 })],
    ['a frame of an unknown version', cborEncode([1, 9, meter.st, 0x32, 1, Buffer.alloc(20)])],
    ['a frame with a short system title', cborEncode([1, 1, Buffer.alloc(4), 0x32, 1, Buffer.alloc(20)])],
    ['a frame with an unknown security suite', cborEncode([1, 1, meter.st, 0x10, 1, Buffer.alloc(20)])],
    ['a frame shorter than its tag', cborEncode([1, 1, meter.st, 0x32, 1, Buffer.alloc(5)])],
  ])('counts %s as notAFrame', (_what, bytes) => {
    expect(classifyPayload(bytes).kind).toBe('notAFrame');
  });

  it.each([
    ['truncated CBOR', meter.frame(1).subarray(0, 10)],
    ['two CBOR items', Buffer.concat([cborEncode(1), cborEncode(2)])],
    ['a reserved CBOR byte', Buffer.from([0xff, 0xff])],
  ])('counts %s as malformed', (_what, bytes) => {
    expect(classifyPayload(bytes).kind).toBe('malformed');
  });

  it('never throws on arbitrary bytes', () => {
    fc.assert(
      fc.property(fc.uint8Array({ minLength: 1, maxLength: 300 }), (b) => {
        expect(['frame', 'notAFrame', 'malformed']).toContain(classifyPayload(b).kind);
      }),
      { numRuns: 2000 },
    );
  });
});

/** A line whose forwarded frames are collected (every frame 'queued'). */
function collectingLine() {
  const got: string[] = [];
  const line = new Line(
    'test',
    (_l, f) => {
      got.push(Buffer.from(f.bytes).toString('hex'));
      return 'queued';
    },
    quiet,
  );
  return { line, got };
}

type Item =
  | { kind: 'good'; ic: number }
  | { kind: 'garbage'; bytes: Uint8Array }
  | { kind: 'bitflip'; ic: number; at: number; bit: number }
  | { kind: 'truncated'; ic: number; keep: number }
  | { kind: 'oversize'; len: number }
  | { kind: 'ack'; ic: number };

const itemArb: fc.Arbitrary<Item> = fc.oneof(
  { weight: 4, arbitrary: fc.record({ kind: fc.constant('good' as const), ic: fc.nat() }) },
  { weight: 1, arbitrary: fc.record({ kind: fc.constant('garbage' as const), bytes: fc.uint8Array({ minLength: 1, maxLength: 64 }) }) },
  { weight: 1, arbitrary: fc.record({ kind: fc.constant('bitflip' as const), ic: fc.nat(), at: fc.nat(), bit: fc.integer({ min: 0, max: 7 }) }) },
  { weight: 1, arbitrary: fc.record({ kind: fc.constant('truncated' as const), ic: fc.nat(), keep: fc.nat() }) },
  { weight: 1, arbitrary: fc.record({ kind: fc.constant('oversize' as const), len: fc.integer({ min: MAX_PAYLOAD + 3, max: MAX_PAYLOAD + 200 }) }) },
  { weight: 1, arbitrary: fc.record({ kind: fc.constant('ack' as const), ic: fc.nat() }) },
);

describe('a line fed good frames interleaved with line noise', () => {
  it('forwards exactly the good frames, in order, and counts every bad one', () => {
    fc.assert(
      fc.property(fc.array(itemArb, { minLength: 1, maxLength: 40 }), fc.integer({ min: 1, max: 97 }), (items, chunk) => {
        const { line, got } = collectingLine();
        const expected: string[] = [];
        const parts: Buffer[] = [];
        let damaged = 0;
        let acks = 0;
        let ic = 0;
        for (const it of items) {
          const frame = meter.frame(++ic); // distinct invocation counters keep frames distinct
          const wire = encodeLinkFrame(frame);
          if (it.kind === 'good') {
            expected.push(frame.toString('hex'));
            parts.push(wire);
          } else if (it.kind === 'garbage') {
            parts.push(Buffer.from(it.bytes));
          } else if (it.kind === 'bitflip') {
            const b = Buffer.from(wire);
            const at = 1 + (it.at % (b.length - 2)); // never the delimiting flags
            b[at]! ^= 1 << it.bit;
            parts.push(b);
            damaged++;
          } else if (it.kind === 'truncated') {
            parts.push(wire.subarray(0, 3 + (it.keep % (wire.length - 4)))); // flag + >= 2 bytes, no closing flag
            damaged++;
          } else if (it.kind === 'oversize') {
            parts.push(Buffer.concat([Buffer.from([FLAG]), Buffer.alloc(it.len, 0x55), Buffer.from([FLAG])]));
            damaged++;
          } else {
            parts.push(encodeLinkFrame(encodeAck({ systemTitle: meter.st, ic: it.ic })));
            acks++;
          }
        }
        parts.push(Buffer.from([FLAG])); // closes a trailing truncated frame
        const stream = Buffer.concat(parts);
        for (let i = 0; i < stream.length; i += chunk) line.parser.write(stream.subarray(i, i + chunk));

        expect(got).toEqual(expected);
        const c = line.counters();
        expect(c.framesOk).toBe(expected.length);
        expect(c.notAFrame).toBeGreaterThanOrEqual(acks);
        // Every damaged item costs at least one bad link frame (a flipped bit may also split a frame in two).
        expect(c.badCrc + c.malformed + c.oversize + c.notAFrame - acks).toBeGreaterThanOrEqual(damaged);
        if (damaged === 0 && !items.some((i) => i.kind === 'garbage')) {
          expect(c.badCrc + c.malformed + c.oversize).toBe(0);
        }
      }),
      { numRuns: 300 },
    );
  });

  it('survives pure random bytes without throwing, counting what it drops', () => {
    fc.assert(
      fc.property(fc.uint8Array({ minLength: 0, maxLength: 4096 }), (bytes) => {
        const { line, got } = collectingLine();
        line.parser.write(Buffer.from(bytes));
        const c = line.counters();
        expect(got.length).toBe(c.framesOk);
        expect(c.framesOk).toBe(0); // random bytes do not forge an authenticated-looking frame with a valid FCS
      }),
      { numRuns: 500 },
    );
  });

  it('an oversize frame between two good ones is dropped whole', () => {
    const { line, got } = collectingLine();
    line.parser.write(Buffer.concat([meter.link(1), Buffer.from([FLAG]), Buffer.alloc(MAX_PAYLOAD + 10, 0x41), meter.link(2)]));
    expect(got).toEqual([meter.frame(1).toString('hex'), meter.frame(2).toString('hex')]);
    expect(line.counters().oversize).toBe(1);
  });
});

describe('totalCounters', () => {
  it('sums line counters and adds forwarding state', () => {
    const a = collectingLine().line;
    const b = collectingLine().line;
    a.parser.write(meter.link(1));
    b.parser.write(Buffer.concat([meter.link(2), Buffer.from([FLAG, 1, 2, 3, FLAG])]));
    const t = totalCounters([a.counters(), b.counters()], { forwarded: 5, pending: 1, uplinks: 2, publishErrors: 0, storeErrors: 0, linesUp: 2 });
    expect(t.framesOk).toBe(2);
    expect(t.badCrc).toBe(1);
    expect(t.forwarded).toBe(5);
    expect(t.linesUp).toBe(2);
  });
});
