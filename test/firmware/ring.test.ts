import { describe, expect, it } from 'vitest';
import { FrameRing } from '../../firmware/ring.js';

const frame = (ic: number) => ({ ic, bytes: Uint8Array.of(ic & 0xff) });

describe('FrameRing', () => {
  it('drops the oldest frame on overflow and counts it', () => {
    const ring = new FrameRing(3);
    expect([1, 2, 3].map((ic) => ring.push(frame(ic)))).toEqual([undefined, undefined, undefined]);
    expect(ring.push(frame(4))?.ic).toBe(1);
    expect(ring.push(frame(5))?.ic).toBe(2);
    expect(ring.dropped).toBe(2);
    expect(ring.list().map((f) => f.ic)).toEqual([3, 4, 5]);
    expect(ring.size).toBe(3);
  });

  it('frees frames selectively, in any order', () => {
    const ring = new FrameRing(8);
    for (let ic = 10; ic < 15; ic++) ring.push(frame(ic));
    expect(ring.ack(12)).toBe(true);
    expect(ring.ack(12)).toBe(false);
    expect(ring.ack(99)).toBe(false);
    expect(ring.ack(10)).toBe(true);
    expect(ring.list().map((f) => f.ic)).toEqual([11, 13, 14]);
    expect(ring.has(13)).toBe(true);
    expect(ring.has(12)).toBe(false);
    expect(ring.get(13)?.ic).toBe(13);
    expect(ring.get(12)).toBeUndefined();
    expect(ring.dropped).toBe(0);
  });

  it('accounts for every frame: held + acked + dropped = pushed', () => {
    const ring = new FrameRing(16);
    let acked = 0;
    for (let ic = 0; ic < 1000; ic++) {
      ring.push(frame(ic));
      if (ic % 3 === 0 && ring.ack(ic - 10)) acked++;
    }
    expect(ring.size + acked + ring.dropped).toBe(1000);
  });

  it('rejects counters that do not increase and bad capacities', () => {
    const ring = new FrameRing(4, [frame(5)]);
    expect(() => ring.push(frame(5))).toThrow(/increasing/);
    expect(() => new FrameRing(0)).toThrow(RangeError);
  });
});
