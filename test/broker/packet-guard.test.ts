import fc from 'fast-check';
import { remainingLength } from './mqtt-wire.js';
import { describe, expect, it } from 'vitest';
import { PacketSizeGuard } from '../../broker/packet-guard.js';

/** A QoS 0 PUBLISH with a `bytes`-long body (its content does not matter to the guard). */
const publish = (bytes: number) => Buffer.concat([Buffer.from([0x30, ...remainingLength(bytes)]), Buffer.alloc(bytes)]);

describe('PacketSizeGuard (MQTT 3.1.1 §2.2.3 remaining length)', () => {
  it('reports a 128 MB CONNECT from its first five bytes', () => {
    expect(new PacketSizeGuard(4096).feed(Buffer.from([0x10, 0x80, 0x80, 0x80, 0x40]))).toBe(1 + 4 + 128 * 1024 * 1024);
  });

  it('encodes lengths as the spec does (vectors of §2.2.3)', () => {
    expect(remainingLength(127)).toEqual([0x7f]);
    expect(remainingLength(128)).toEqual([0x80, 0x01]);
    expect(remainingLength(16_383)).toEqual([0xff, 0x7f]);
    expect(remainingLength(16_384)).toEqual([0x80, 0x80, 0x01]);
    expect(remainingLength(268_435_455)).toEqual([0xff, 0xff, 0xff, 0x7f]);
  });

  it('reports a remaining length of more than four bytes as malformed', () => {
    expect(new PacketSizeGuard(4096).feed(Buffer.from([0x10, 0xff, 0xff, 0xff, 0xff, 0x01]))).toBe(Infinity);
  });

  it('passes packets up to the limit, whole or split anywhere, and refuses the first one over it', () => {
    fc.assert(
      fc.property(fc.array(fc.integer({ min: 0, max: 20_000 }), { minLength: 1, maxLength: 8 }), fc.integer({ min: 1, max: 4000 }), (sizes, cut) => {
        const packets = sizes.map(publish);
        const limit = 9000;
        const stream = Buffer.concat(packets);
        const firstTooBig = packets.findIndex((p) => p.length > limit);
        const guard = new PacketSizeGuard(limit);
        let verdict = 0;
        for (let i = 0; i < stream.length && verdict === 0; i += cut) verdict = guard.feed(stream.subarray(i, i + cut));
        expect(verdict).toBe(firstTooBig === -1 ? 0 : packets[firstTooBig]!.length);
      }),
    );
  });

  it('applies a raised limit to the packets that follow', () => {
    const guard = new PacketSizeGuard(100);
    expect(guard.feed(publish(50))).toBe(0);
    guard.limit = 10_000;
    expect(guard.feed(publish(5000))).toBe(0);
    expect(guard.feed(publish(20_000))).toBe(publish(20_000).length);
  });
});
