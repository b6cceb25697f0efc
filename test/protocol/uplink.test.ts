import { randomBytes } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { cborEncode } from '../../protocol/cbor.js';
import { decodeUplink, encodeUplink, MAX_FRAMES_PER_UPLINK } from '../../protocol/uplink.js';

describe('uplink', () => {
  it('round-trips the frame bytes unchanged, in order', () => {
    const frames = Array.from({ length: 5 }, (_, i) => randomBytes(20 + i));
    const u = decodeUplink(encodeUplink({ gateway: 'gw-nb1', frames }));
    expect(u.gateway).toBe('gw-nb1');
    expect(u.frames.map((f) => Buffer.from(f))).toEqual(frames);
    expect(decodeUplink(encodeUplink({ gateway: 'g', frames: Array.from({ length: MAX_FRAMES_PER_UPLINK }, () => new Uint8Array(1)) })).frames).toHaveLength(MAX_FRAMES_PER_UPLINK);
  });

  it('rejects bad input with a TypeError naming the field', () => {
    const f = new Uint8Array(3);
    const bad: [unknown, RegExp][] = [
      [[2, 'gw', [f]], /unsupported uplink version 2/],
      [[1, 'gw', []], /frames must be an array of 1..1024/],
      [[1, 'gw', Array.from({ length: MAX_FRAMES_PER_UPLINK + 1 }, () => f)], /frames must be an array/],
      [[1, 'gw', [f, 'x']], /frames\[1\] must be a byte string/],
      [[1, '', [f]], /gateway/],
      [[1, 7, [f]], /gateway/],
      [[1, 'gw/other', [f]], /gateway must match/],
      [[1, 'gw+', [f]], /gateway must match/],
      [[1, 'gw', [f], 0], /uplink must be an array of 3..3/],
      [{ gateway: 'gw' }, /uplink must be an array/],
    ];
    for (const [v, re] of bad) expect(() => decodeUplink(cborEncode(v)), String(re)).toThrow(re);
    for (const [v] of bad) expect(() => decodeUplink(cborEncode(v))).toThrow(TypeError);
    expect(() => decodeUplink(Buffer.from('not cbor at all'))).toThrow(TypeError);
  });

  it('refuses to encode what it would not decode', () => {
    expect(() => encodeUplink({ gateway: 'a/b', frames: [new Uint8Array(1)] })).toThrow(TypeError);
    expect(() => encodeUplink({ gateway: 'gw', frames: [] })).toThrow(TypeError);
    expect(() => encodeUplink({ gateway: 'gw', frames: ['x' as unknown as Uint8Array] })).toThrow(TypeError);
  });
});
