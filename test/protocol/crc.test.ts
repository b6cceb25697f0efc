import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { crc16x25 } from '../../protocol/crc.js';

/** Bit-by-bit reference straight from the parameters (poly 0x1021 reflected, init/xorout 0xFFFF). */
function reference(data: Uint8Array): number {
  let crc = 0xffff;
  for (const byte of data) {
    crc ^= byte;
    for (let k = 0; k < 8; k++) crc = crc & 1 ? (crc >>> 1) ^ 0x8408 : crc >>> 1;
  }
  return crc ^ 0xffff;
}
const hx = (s: string) => Buffer.from(s.replace(/\s/g, ''), 'hex');

describe('CRC-16/X.25', () => {
  it('has the catalogued check value 0x906E and CRC 0 for no data', () => {
    expect(crc16x25(Buffer.from('123456789', 'ascii'))).toBe(0x906e);
    expect(crc16x25(new Uint8Array(0))).toBe(0x0000);
  });

  it('matches the FCS of published IEC 62056-46 HDLC frames (sent LSB first)', () => {
    // SNRM "7E A0 07 03 21 93 0F 01 7E" and DISC "7E A0 07 03 21 53 03 C7 7E" (Gurux, meter readers)
    expect(crc16x25(hx('a0 07 03 21 93'))).toBe(0x010f);
    expect(crc16x25(hx('a0 07 03 21 53'))).toBe(0xc703);
  });

  it('leaves the RFC 1662 good-FCS residue 0xF0B8 after data || FCS (LSB first)', () => {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 300 }), (data) => {
        const fcs = crc16x25(data);
        // crc16x25 applies xorout, so the residue shows as 0xF0B8 ^ 0xFFFF
        expect(crc16x25(Buffer.concat([data, Buffer.from([fcs & 0xff, fcs >>> 8])]))).toBe(0xf0b8 ^ 0xffff);
      }),
    );
  });

  it('agrees with the bitwise reference and detects every single-bit error', () => {
    fc.assert(
      fc.property(fc.uint8Array({ minLength: 1, maxLength: 300 }), fc.nat(), (data, bit) => {
        expect(crc16x25(data)).toBe(reference(data));
        const flipped = Uint8Array.from(data);
        const i = bit % (data.length * 8);
        flipped[i >> 3]! ^= 1 << (i & 7);
        expect(crc16x25(flipped)).not.toBe(crc16x25(data));
      }),
    );
  });
});
