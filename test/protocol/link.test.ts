import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { crc16x25 } from '../../protocol/crc.js';
import { encodeLinkFrame, LinkParser, MAX_PAYLOAD } from '../../protocol/link.js';
import { forceLinkFrame, linkModel, runParser, zeroCounters } from './link-model.js';

const hx = (s: string) => Buffer.from(s.replace(/\s/g, ''), 'hex');
const counters = (over: Partial<ReturnType<typeof zeroCounters>>) => ({ ...zeroCounters(), ...over });

describe('encodeLinkFrame', () => {
  it('puts flags around payload || FCS (LSB first) and escapes 7E/7D only', async () => {
    const payload = Uint8Array.from({ length: 256 }, (_, i) => i);
    const wire = encodeLinkFrame(payload);
    expect(wire[0]).toBe(0x7e);
    expect(wire.at(-1)).toBe(0x7e);
    const inner = wire.subarray(1, -1);
    expect(inner.includes(0x7e)).toBe(false);
    const fcs = crc16x25(payload);
    // 256 bytes + 2 FCS + one extra byte for each of 7E and 7D in the payload and in the FCS
    const extra = [0x7e, 0x7d].filter((b) => b === (fcs & 0xff) || b === fcs >>> 8).length;
    expect(inner.length).toBe(256 + 2 + 2 + extra);
    expect(inner.subarray(0x7d, 0x7d + 4)).toEqual(hx('7d5d 7d5e'));
    expect((await runParser([wire])).payloads).toEqual([Buffer.from(payload)]);
  });

  it('accepts exactly 1..MAX_PAYLOAD bytes', () => {
    expect(MAX_PAYLOAD).toBe(2048);
    expect(() => encodeLinkFrame(new Uint8Array(0))).toThrow(RangeError);
    expect(() => encodeLinkFrame(new Uint8Array(MAX_PAYLOAD + 1))).toThrow(RangeError);
    const worst = encodeLinkFrame(new Uint8Array(MAX_PAYLOAD).fill(0x7e));
    expect(worst.length).toBeLessThanOrEqual(2 * (MAX_PAYLOAD + 2) + 2); // 4102, as docs/protocol.md §3 says
    expect(worst.length).toBeGreaterThanOrEqual(2 * MAX_PAYLOAD + 4);
    expect(() => encodeLinkFrame([1, 2] as unknown as Uint8Array)).toThrow(TypeError);
  });
});

describe('LinkParser', () => {
  it('round-trips payloads full of flag and escape bytes, back to back', async () => {
    await fc.assert(
      fc.asyncProperty(
        fc.array(fc.uint8Array({ minLength: 1, maxLength: 300 }).chain((u) => fc.constantFrom(u, u.map((b) => (b & 1 ? 0x7e : 0x7d)))), { minLength: 1, maxLength: 8 }),
        async (payloads) => {
          const out = await runParser([Buffer.concat(payloads.map(encodeLinkFrame))]);
          expect(out.payloads).toEqual(payloads.map((p) => Buffer.from(p)));
          expect(out.counters).toEqual(counters({ frames: payloads.length }));
        },
      ),
      { numRuns: 200 },
    );
  });

  it('takes one shared flag between frames, and ignores repeated flags', async () => {
    const a = encodeLinkFrame(hx('0102 03'));
    const b = encodeLinkFrame(hx('7e7e'));
    const shared = Buffer.concat([a, b.subarray(1)]); // 7E a 7E b 7E
    expect((await runParser([shared])).payloads).toEqual([hx('010203'), hx('7e7e')]);
    const filled = Buffer.concat([hx('7e7e7e'), a, hx('7e7e'), b]);
    expect(await runParser([filled])).toEqual({ payloads: [hx('010203'), hx('7e7e')], counters: counters({ frames: 2 }) });
  });

  it('passes MAX_PAYLOAD and counts MAX_PAYLOAD + 1 forced onto the wire as oversize, then carries on', async () => {
    const max = new Uint8Array(MAX_PAYLOAD).fill(0x7d);
    const over = new Uint8Array(MAX_PAYLOAD + 1).fill(0x41);
    const next = hx('55');
    const out = await runParser([forceLinkFrame(max), forceLinkFrame(over), encodeLinkFrame(next)]);
    expect(out.payloads).toEqual([Buffer.from(max), next]);
    expect(out.counters).toEqual(counters({ frames: 2, oversize: 1, resyncs: 1 }));
    // a smaller configured limit, and a huge flag-less run that never buffers more than the limit
    const small = await runParser([forceLinkFrame(hx('0102030405')), Buffer.alloc(1 << 20, 0x41), encodeLinkFrame(hx('0102'))], { maxPayload: 4 });
    expect(small.payloads).toEqual([hx('0102')]);
    expect(small.counters).toEqual(counters({ frames: 1, oversize: 2, resyncs: 2 }));
  });

  it('counts each kind of damage and resynchronises on the next flag', async () => {
    const good = encodeLinkFrame(hx('a1a2a3'));
    const cases: [string, Buffer, Partial<ReturnType<typeof zeroCounters>>][] = [
      ['garbage before the first flag', hx('0102 03'), { garbageBytes: 3, resyncs: 1 }],
      ['bit flip', Buffer.from(good.map((b, i) => (i === 2 ? b ^ 0x10 : b))), { badCrc: 1, resyncs: 1 }],
      ['too short for an FCS', hx('7e 0102 7e'), { malformed: 1, resyncs: 1 }],
      ['escape then flag (HDLC abort)', hx('7e 7d 7e'), { malformed: 1, resyncs: 1 }],
      ['abort inside a frame', hx('7e 010203 7d 7e'), { malformed: 1, resyncs: 1 }],
      ['7D 7D', hx('7e 01 7d7d 020304 7e'), { malformed: 1, resyncs: 1 }],
      ['lost closing flag: the garbage runs into the next opening flag', hx('7e 01 02 03 04'), { badCrc: 1, resyncs: 1 }],
    ];
    for (const [what, damaged, damage] of cases) {
      // the intact frame after the damage always comes out
      const out = await runParser([Buffer.concat([damaged, good])]);
      expect(out.payloads, what).toEqual([hx('a1a2a3')]);
      expect(out.counters, what).toEqual(counters({ frames: 1, ...damage }));
    }
    // an unterminated frame when the stream ends is garbage, counted in wire bytes (escapes included)
    expect((await runParser([hx('7e 01 7d5e 03')])).counters).toEqual(counters({ garbageBytes: 4, resyncs: 1 }));
    expect((await runParser([hx('7e 7e 7e')])).counters).toEqual(counters({}));
  });

  it('parses the IEC 62056-46 SNRM frame as a link frame', async () => {
    expect((await runParser([hx('7E A0 07 03 21 93 0F 01 7E')])).payloads).toEqual([hx('a007032193')]);
  });

  it('gives the same result however the stream is split, and the result the reference model predicts', async () => {
    const stream = Buffer.concat([
      hx('99 7d'),
      encodeLinkFrame(hx('7e7d7e')),
      encodeLinkFrame(hx('01020304')).subarray(0, -1), // shares its closing flag with the next opening
      encodeLinkFrame(hx('7d')),
      Buffer.from(encodeLinkFrame(hx('0506070809')).map((b, i) => (i === 3 ? b ^ 1 : b))),
      hx('7e 7d 7e 7e 01 7d7d 0203 7e'),
      encodeLinkFrame(new Uint8Array(40).fill(0x7e)),
      hx('7e 0a 0b 7d'),
    ]);
    const whole = await runParser([stream]);
    expect(whole).toEqual(linkModel(stream));
    expect(whole.payloads).toHaveLength(4);
    for (let i = 0; i <= stream.length; i++) {
      expect(await runParser([stream.subarray(0, i), stream.subarray(i)]), `split at ${i}`).toEqual(whole);
    }
    expect(await runParser([...stream].map((b) => Uint8Array.of(b)))).toEqual(whole);
    await fc.assert(
      fc.asyncProperty(fc.uniqueArray(fc.integer({ min: 1, max: stream.length - 1 }), { maxLength: 12 }), async (cuts) => {
        const at = [0, ...cuts.sort((x, y) => x - y), stream.length];
        const chunks = at.slice(1).map((end, k) => stream.subarray(at[k]!, end));
        expect(await runParser(chunks)).toEqual(whole);
      }),
      { numRuns: 100 },
    );
  });

  it('checks its options in the constructor', () => {
    for (const maxPayload of [0, -1, 1.5, 2 ** 20 + 1, Number.NaN]) expect(() => new LinkParser({ maxPayload })).toThrow(TypeError);
    expect(() => new LinkParser({ maxPayload: 1 })).not.toThrow();
  });
});
