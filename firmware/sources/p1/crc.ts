/**
 * CRC-16/ARC, the checksum of a DSMR 4.x / 5.0 P1 telegram.
 *
 * Parameters (Williams model): width 16, poly 0x8005 reflected (0xA001), init 0, refin/refout true,
 * xorout 0, check("123456789") = 0xBB3D. A telegram's CRC covers every byte from `/` to `!` inclusive
 * and is written after the `!` as four upper-case hex digits.
 * @module
 */

const TABLE = /* @__PURE__ */ (() => {
  const t = new Uint16Array(256);
  for (let i = 0; i < 256; i++) {
    let c = i;
    for (let k = 0; k < 8; k++) c = c & 1 ? (c >>> 1) ^ 0xa001 : c >>> 1;
    t[i] = c;
  }
  return t;
})();

/**
 * Computes CRC-16/ARC over `data[start, end)`.
 * @example
 * ```ts
 * crc16arc(Buffer.from('123456789')); // 0xbb3d
 * ```
 */
export function crc16arc(data: Uint8Array, start = 0, end = data.length): number {
  let crc = 0;
  for (let i = start; i < end; i++) crc = (crc >>> 8) ^ TABLE[(crc ^ data[i]!) & 0xff]!;
  return crc;
}

/**
 * The four upper-case hex digits a telegram carries after its `!`.
 * @example
 * ```ts
 * crcText(0x6eee); // '6EEE'
 * ```
 */
export function crcText(crc: number): string {
  return crc.toString(16).toUpperCase().padStart(4, '0');
}
