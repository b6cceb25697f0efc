import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { asArray, asBytes, asText, asUint, cborDecode, cborEncode, MAX_CBOR_DEPTH } from '../../protocol/cbor.js';

const hx = (s: string) => Buffer.from(s.replace(/\s/g, ''), 'hex');
const enc = (v: unknown) => cborEncode(v).toString('hex');

/** Independent reference: the preferred-serialization head of RFC 8949 §4.2.1. */
function head(major: number, n: number | bigint): string {
  const m = major << 5;
  const b = BigInt(n);
  const h = (v: bigint, bytes: number) => v.toString(16).padStart(bytes * 2, '0');
  if (b < 24n) return h(BigInt(m) | b, 1);
  if (b < 0x100n) return h(BigInt(m | 24), 1) + h(b, 1);
  if (b < 0x10000n) return h(BigInt(m | 25), 1) + h(b, 2);
  if (b < 0x100000000n) return h(BigInt(m | 26), 1) + h(b, 4);
  return h(BigInt(m | 27), 1) + h(b, 8);
}

describe('cborEncode: preferred serialization of plain values', () => {
  it('integers take the shortest head, including 2^32 and above (never a float)', () => {
    const edges = [0, 23, 24, 255, 256, 65535, 65536, 2 ** 32 - 1, 2 ** 32, 2 ** 48, Number.MAX_SAFE_INTEGER];
    for (const n of edges) {
      expect(enc(n), String(n)).toBe(head(0, n));
      expect(cborDecode(cborEncode(n))).toBe(n);
      if (n === Number.MAX_SAFE_INTEGER) continue; // -(2^53) is not a safe integer
      expect(enc(-n - 1), String(-n - 1)).toBe(head(1, n));
      expect(cborDecode(cborEncode(-n - 1))).toBe(-n - 1);
    }
    fc.assert(
      fc.property(fc.maxSafeInteger(), (n) => {
        expect(enc(n)).toBe(n >= 0 ? head(0, n) : head(1, -1 - n));
        expect(cborDecode(cborEncode(n))).toBe(n);
      }),
    );
  });

  it('strings, byte strings, arrays and maps take the shortest length head', () => {
    for (const len of [0, 23, 24, 85, 86, 255, 256, 65535, 65536]) {
      const s = 'é'.repeat(len >> 1) + 'a'.repeat(len & 1); // UTF-8 length = len
      expect(enc(s).slice(0, head(3, len).length), `text ${len}`).toBe(head(3, len));
      expect(enc(new Uint8Array(len)).slice(0, head(2, len).length), `bytes ${len}`).toBe(head(2, len));
      expect(enc(new Array(len).fill(0)).slice(0, head(4, len).length), `array ${len}`).toBe(head(4, len));
      if (len <= 300) {
        const obj = Object.fromEntries(Array.from({ length: len }, (_, i) => [`k${i}`, 0]));
        expect(enc(obj).slice(0, head(5, len).length), `map ${len}`).toBe(head(5, len));
      }
    }
    fc.assert(
      fc.property(fc.string({ unit: 'grapheme', maxLength: 300 }), (s) => {
        const n = Buffer.byteLength(s);
        expect(enc(s)).toBe(head(3, n) + Buffer.from(s).toString('hex'));
      }),
    );
  });

  it('byte strings are major type 2 without a typed-array tag; Buffer and Uint8Array alike', () => {
    expect(enc(Uint8Array.of(1, 2))).toBe('420102');
    expect(enc(Buffer.from([1, 2]))).toBe('420102');
  });

  it('bigints within ±(2^53 - 1) are written as integers; larger ones are refused', () => {
    expect(enc(5n)).toBe('05');
    expect(enc(2n ** 40n)).toBe(head(0, 2 ** 40));
    expect(() => cborEncode(2n ** 53n)).toThrow(TypeError);
    expect(() => cborEncode([-(2n ** 60n)])).toThrow(/byte strings/);
  });

  it('refuses values that would need a tag or are not data', () => {
    for (const v of [new Date(0), new Map([[1, 2]]), new Set([1]), new Uint16Array(2), new (class Foo {})(), /x/, () => 1, Symbol('s')]) {
      expect(() => cborEncode({ field: [v] })).toThrow(TypeError);
    }
  });

  it(`nests at most ${MAX_CBOR_DEPTH} arrays or maps, on both sides`, () => {
    const nest = (d: number): unknown => (d === 0 ? 1 : d % 2 ? [nest(d - 1)] : { k: nest(d - 1) });
    expect(cborDecode(cborEncode(nest(MAX_CBOR_DEPTH)))).toEqual(nest(MAX_CBOR_DEPTH));
    expect(() => cborEncode(nest(MAX_CBOR_DEPTH + 1))).toThrow(/deeper/);
    expect(() => cborDecode(hx('81'.repeat(MAX_CBOR_DEPTH + 1) + '01'))).toThrow(/deeper/);
    expect(cborDecode(hx('81'.repeat(MAX_CBOR_DEPTH) + '01'))).toBeInstanceOf(Array);
  });

  it('does not modify the value it encodes', () => {
    const v = { a: [2 ** 40, { b: 2 ** 50 }] };
    cborEncode(v);
    expect(v).toEqual({ a: [2 ** 40, { b: 2 ** 50 }] });
  });
});

describe('cborDecode: plain CBOR only, errors are TypeErrors', () => {
  it('refuses the text string "__proto__", which would otherwise change a decoded map\'s prototype and drop the entry', () => {
    // {"__proto__": 1, "a": 2}, and the string alone
    expect(() => cborDecode(Buffer.from('a2695f5f70726f746f5f5f01616102', 'hex'))).toThrow(/__proto__/);
    expect(() => cborDecode(Buffer.from('695f5f70726f746f5f5f', 'hex'))).toThrow(/__proto__/);
    expect(cborDecode(Buffer.from('a2685f5f70726f746f5f01616102', 'hex'))).toEqual({ __proto_: 1, a: 2 }); // a neighbour of it is fine
  });

  const rejects = (h: string, re: RegExp) => {
    expect(() => cborDecode(hx(h)), h).toThrow(TypeError);
    expect(() => cborDecode(hx(h)), h).toThrow(re);
  };

  it('accepts a peer\'s valid non-preferred integer encodings and indefinite arrays/maps', () => {
    expect(cborDecode(hx('1b0000000000000005'))).toBe(5);
    expect(cborDecode(hx('1b0000000100000000'))).toBe(2 ** 32);
    expect(cborDecode(hx('1b001fffffffffffff'))).toBe(Number.MAX_SAFE_INTEGER);
    expect(cborDecode(hx('3b001ffffffffffffe'))).toBe(-Number.MAX_SAFE_INTEGER);
    expect(cborDecode(hx('9f0102ff'))).toEqual([1, 2]);
    expect(cborDecode(hx('bf616101ff'))).toEqual({ a: 1 });
  });

  it('rejects integers beyond ±(2^53 - 1), which a double cannot hold exactly', () => {
    rejects('1b0020000000000000', /2\^53/);
    rejects('1bffffffffffffffff', /2\^53/);
    rejects('3b001fffffffffffff', /2\^53/);
  });

  it('rejects every tag, including those cbor-x would turn into bignums, RegExps or shared references', () => {
    rejects('c24101', /tag 2/);
    rejects('c1 00', /tag 1/);
    rejects('d81b8266526567457870612e', /tag 27/); // RegExp("a.")
    rejects('d81c80', /tag 28/);
    rejects('d9010281 01', /tag 258/);
    rejects('d9dfff 8300 80 00', /tag 57343/); // cbor-x record definition
    rejects('8201c24101', /tag 2/); // nested
  });

  it('rejects indefinite-length strings, reserved and unassigned codes, stray breaks', () => {
    rejects('5f4101ff', /indefinite-length strings/);
    rejects('7f6161ff', /indefinite-length strings/);
    rejects('1c', /reserved/);
    rejects('f0', /simple/);
    rejects('f820', /simple/);
    rejects('ff', /break/);
    rejects('8201ff', /break/);
    rejects('1f', /indefinite length on an integer/);
  });

  it('rejects truncated input, trailing bytes and empty input', () => {
    rejects('', /empty/);
    rejects('19 01', /truncated/);
    rejects('82 01', /array of 2 entries but only 1 bytes left/);
    rejects('9f 01', /truncated/);
    rejects('43 0102', /3 bytes but only 2/);
    rejects('01 02', /trailing/);
    expect(() => cborDecode('01' as unknown as Uint8Array)).toThrow(TypeError);
  });

  it('rejects a length header that the input does not back, before allocating anything', () => {
    // 4 GB byte/text string, array and map announced in a few bytes
    rejects('5affffffff00', /4294967295 bytes but only 1/);
    rejects('7affffffff00', /4294967295 bytes/);
    rejects('9affffffff00', /array of 4294967295 entries/);
    rejects('baffffffff00', /map of 4294967295 entries/);
    rejects('5b000000010000000000', /bytes but only/);
    rejects('9b7fffffffffffffff', /array of/);
    // nested arrays each claiming what is left (a per-level check alone would pass them)
    rejects('99ffff 99fffe 99fffd', /array of/);
  });

  it('a tag-2 bignum of 1 MB is refused as a tag, never converted (cbor-x does that in quadratic time)', () => {
    const big = Buffer.concat([hx('c25a00100000'), Buffer.alloc(1 << 20, 0xff)]);
    expect(() => cborDecode(big)).toThrow(/tag 2/);
  });

  it('keeps working after an error (cbor-x keeps decoder state in module globals)', () => {
    expect(() => cborDecode(hx('8301'))).toThrow(TypeError);
    expect(cborDecode(hx('820102'))).toEqual([1, 2]);
  });

  it('a "__proto__" key does not reach the prototype: it is refused before decoding', () => {
    expect(() => cborDecode(hx('a1695f5f70726f746f5f5fa1616101'))).toThrow(/__proto__/);
    expect(({} as Record<string, unknown>).a).toBeUndefined();
  });

  it('round-trips any plain value', () => {
    const plain = fc.letrec((tie) => ({
      value: fc.oneof(
        { depthSize: 'small' },
        fc.maxSafeInteger(),
        fc.string().filter((s) => s !== '__proto__'), // refused by the profile (§1)
        fc.boolean(),
        fc.constant(null),
        fc.uint8Array({ maxLength: 40 }).map((u) => Buffer.from(u)),
        fc.array(tie('value'), { maxLength: 5 }),
        fc.dictionary(fc.string({ maxLength: 8 }).filter((k) => k !== '__proto__'), tie('value'), { maxKeys: 5 }),
      ),
    })).value;
    fc.assert(
      fc.property(plain, (v) => {
        expect(cborDecode(cborEncode(v))).toEqual(v);
      }),
    );
  });
});

describe('narrowing helpers', () => {
  it('name the field and reject the wrong type or range', () => {
    expect(asUint(7, 'x', 10)).toBe(7);
    expect(() => asUint(11, 'x', 10)).toThrow(/x must be an unsigned integer <= 10/);
    for (const bad of [-1, 1.5, '1', 1n, null, NaN]) expect(() => asUint(bad, 'f')).toThrow(TypeError);
    expect(() => asBytes(new Uint8Array(3), 'b', 4)).toThrow(/b must be 4 bytes, got 3/);
    expect(() => asBytes([1], 'b')).toThrow(/byte string/);
    expect(() => asText('', 't')).toThrow(/non-empty/);
    expect(() => asText('x'.repeat(257), 't')).toThrow(TypeError);
    expect(() => asArray([1, 2, 3], 'a', 1, 2)).toThrow(/a must be an array of 1..2/);
  });
});
