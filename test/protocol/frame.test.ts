import { randomBytes } from 'node:crypto';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { cborDecode, cborEncode } from '../../protocol/cbor.js';
import {
  decodeFrame,
  decodeMessage,
  encodeAck,
  encodeFrame,
  MAX_IC,
  meterId,
  MSG_ACK,
  MSG_FRAME,
  openFrame,
  SC_AES256GCM,
  sealFrame,
  systemTitle,
  type CipheredFrame,
} from '../../protocol/frame.js';
import { nobleGcmOpen, nobleGcmSeal } from './noble.js';

const key = randomBytes(32);
const st = systemTitle('SMR', 0x0102030405);

/** IV and AAD built from the byte layout in docs/protocol.md §6, independently of protocol/frame.ts. */
function docLayout(f: { systemTitle: Uint8Array; sc: number; ic: number }) {
  const ic = Buffer.alloc(4);
  ic.writeUInt32BE(f.ic);
  return { iv: Buffer.concat([f.systemTitle, ic]), aad: Buffer.concat([Buffer.from([1, 1]), f.systemTitle, Buffer.from([f.sc]), ic]) };
}

describe('system title and meter id', () => {
  it('is the FLAG id in ASCII then a 5-byte big-endian serial', () => {
    expect(Buffer.from(st).toString('hex')).toBe('534d520102030405');
    expect(meterId(systemTitle('ABC', 2 ** 40 - 1))).toBe('414243ffffffffff');
    expect(() => systemTitle('Ab1', 1)).toThrow(TypeError);
    expect(() => systemTitle('ABC', 2 ** 40)).toThrow(RangeError);
  });
});

describe('ciphered frame', () => {
  it('is AES-256-GCM with IV = system title || IC and the 15-byte AAD: a second implementation agrees both ways', () => {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 200 }), fc.nat({ max: MAX_IC }), (pt, ic) => {
        const h = { systemTitle: st, sc: SC_AES256GCM, ic };
        const { iv, aad } = docLayout(h);
        const f = sealFrame(key, h, pt);
        expect(f.ciphertext.length).toBe(pt.length + 12);
        expect(nobleGcmOpen(key, iv, f.ciphertext, aad, 12)).toEqual(Buffer.from(pt));
        expect(Buffer.from(f.ciphertext)).toEqual(nobleGcmSeal(key, iv, pt, aad, 12));
        expect(Buffer.from(openFrame(key, { ...h, ciphertext: nobleGcmSeal(key, iv, pt, aad, 12) }))).toEqual(Buffer.from(pt));
      }),
      { numRuns: 50 },
    );
  });

  it('is the CBOR array [1, 1, systemTitle, sc, ic, ciphertext] and round-trips through decodeFrame', () => {
    const f = sealFrame(key, { systemTitle: st, sc: SC_AES256GCM, ic: MAX_IC }, Buffer.from('hello'));
    const bytes = encodeFrame(f);
    expect(cborDecode(bytes)).toEqual([1, 1, Buffer.from(st), 0x32, MAX_IC, Buffer.from(f.ciphertext)]);
    const back = decodeFrame(bytes);
    expect(back.ic).toBe(MAX_IC);
    expect(Buffer.from(openFrame(key, back)).toString()).toBe('hello');
  });

  it('fails authentication when any header field or any ciphertext/tag byte changes, or with another key', () => {
    const h = { systemTitle: st, sc: SC_AES256GCM, ic: 7 };
    const f = sealFrame(key, h, Buffer.from('a reading batch'));
    const auth = (g: CipheredFrame, k: Uint8Array = key) => expect(() => openFrame(k, g)).toThrow(/^authentication failed$/);
    auth({ ...f, ic: 8 });
    auth({ ...f, ic: 7 + 2 ** 24 });
    for (let i = 0; i < 8; i++) {
      const t = Uint8Array.from(st);
      t[i]! ^= 0x01;
      auth({ ...f, systemTitle: t });
    }
    for (let i = 0; i < f.ciphertext.length; i++) {
      for (const bit of [0x01, 0x80]) {
        const c = Uint8Array.from(f.ciphertext);
        c[i]! ^= bit;
        auth({ ...f, ciphertext: c });
      }
    }
    auth({ ...f, ciphertext: f.ciphertext.subarray(0, -1) });
    auth(f, randomBytes(32));
    // the SC byte is in the AAD too, but version 1 knows only 0x32: anything else is refused before deciphering
    expect(() => openFrame(key, { ...f, sc: 0x30 })).toThrow(/security control/);
    // type and version bytes are bound as well: an independent GCM with another type byte in the AAD fails
    const { iv, aad } = docLayout(h);
    aad[0] = 2;
    expect(() => nobleGcmOpen(key, iv, f.ciphertext, aad, 12)).toThrow(/tag mismatch/);
  });

  it('refuses to build what a receiver would reject', () => {
    const h = { systemTitle: st, sc: SC_AES256GCM, ic: 1 };
    expect(() => sealFrame(key, { ...h, ic: MAX_IC + 1 }, Buffer.alloc(1))).toThrow(TypeError);
    expect(() => sealFrame(key, { ...h, ic: -1 }, Buffer.alloc(1))).toThrow(TypeError);
    expect(() => sealFrame(key, { ...h, sc: 0x31 }, Buffer.alloc(1))).toThrow(TypeError);
    expect(() => sealFrame(key, { ...h, systemTitle: st.subarray(0, 7) }, Buffer.alloc(1))).toThrow(TypeError);
    expect(() => sealFrame(key.subarray(0, 16), h, Buffer.alloc(1))).toThrow(/32 bytes/);
    expect(() => encodeFrame({ ...h, ciphertext: new Uint8Array(11) })).toThrow(/shorter than the GCM tag/);
  });
});

describe('acknowledgement and decodeMessage', () => {
  it('encodes [2, 1, systemTitle, ic] and decodes as an ack', () => {
    const bytes = encodeAck({ systemTitle: st, ic: 0 });
    expect(cborDecode(bytes)).toEqual([2, 1, Buffer.from(st), 0]);
    expect(decodeMessage(bytes)).toEqual({ type: MSG_ACK, systemTitle: Buffer.from(st), ic: 0 });
    expect(() => decodeFrame(bytes)).toThrow(/not a ciphered frame/);
    expect(() => encodeAck({ systemTitle: st, ic: MAX_IC + 1 })).toThrow(TypeError);
  });

  it('rejects every structural deviation with a TypeError naming the problem', () => {
    const ct = new Uint8Array(12);
    const bad: [unknown, RegExp][] = [
      [[1, 2, st, 0x32, 1, ct], /unsupported version 2/],
      [[3, 1, st, 1], /unknown message type 3/],
      [[1, 1, st, 0x32, 1], /unknown message type 1 with 5 items/],
      [[2, 1, st, 1, 0], /unknown message type 2 with 5 items/],
      [[1, 1, st.subarray(0, 7), 0x32, 1, ct], /systemTitle must be 8 bytes/],
      [[1, 1, st, 0x30, 1, ct], /security control/],
      [[1, 1, st, 0x32, 2 ** 32, ct], /invocation counter/],
      [[1, 1, st, 0x32, 1, ct.subarray(1)], /shorter than the GCM tag/],
      [[1, 1, st, 0x32, 1, 'text'], /ciphertext must be a byte string/],
      [[2, 1, 'st', 1], /systemTitle must be a byte string/],
      [{ type: 1 }, /message must be an array/],
      [[-1, 1, st, 1], /message type/],
    ];
    for (const [v, re] of bad) expect(() => decodeMessage(cborEncode(v)), String(re)).toThrow(re);
    for (const v of bad) expect(() => decodeMessage(cborEncode(v[0]))).toThrow(TypeError);
  });

  it('a frame decodes to exactly what was sealed', () => {
    const f = sealFrame(key, { systemTitle: st, sc: SC_AES256GCM, ic: 99 }, Buffer.from([1, 2, 3]));
    const m = decodeMessage(encodeFrame(f));
    expect(m).toEqual({ type: MSG_FRAME, systemTitle: Buffer.from(st), sc: 0x32, ic: 99, ciphertext: Buffer.from(f.ciphertext) });
  });
});
