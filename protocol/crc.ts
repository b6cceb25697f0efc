/**
 * CRC-16/X.25 (the HDLC frame check sequence of ISO/IEC 13239 and IEC 62056-46).
 *
 * Parameters (Williams model): width 16, poly 0x1021 reflected (0x8408), init 0xFFFF, refin/refout true,
 * xorout 0xFFFF, check("123456789") = 0x906E. Transmitted least significant byte first.
 * @module
 */

const TABLE = /* @__PURE__ */ (() => {
  const t = new Uint16Array(256);
  for (let i = 0; i < 256; i++) {
    let c = i;
    for (let k = 0; k < 8; k++) c = c & 1 ? (c >>> 1) ^ 0x8408 : c >>> 1;
    t[i] = c;
  }
  return t;
})();

/**
 * Computes CRC-16/X.25 over `data`.
 * @example
 * ```ts
 * crc16x25(new TextEncoder().encode('123456789')); // 0x906e
 * ```
 */
export function crc16x25(data: Uint8Array): number {
  let crc = 0xffff;
  for (let i = 0; i < data.length; i++) crc = (crc >>> 8) ^ TABLE[(crc ^ data[i]!) & 0xff]!;
  return (crc ^ 0xffff) & 0xffff;
}
