/**
 * Byte helpers shared by the browser app and the Node side (no Node or DOM-only APIs beyond `btoa`/`atob`,
 * which Node 20 has too).
 * @module
 */

/**
 * A copy of `u` backed by a plain `ArrayBuffer` (what WebCrypto's `BufferSource` asks for).
 * @example
 * ```ts
 * await crypto.subtle.digest('SHA-256', ab(bytes));
 * ```
 */
export function ab(u: Uint8Array): Uint8Array<ArrayBuffer> {
  return new Uint8Array(u) as Uint8Array<ArrayBuffer>;
}

/**
 * Base64url without padding (RFC 4648 §5).
 * @example
 * ```ts
 * b64u(new Uint8Array([251, 255])); // '-_8'
 * ```
 */
export function b64u(bytes: Uint8Array): string {
  let s = '';
  for (let i = 0; i < bytes.length; i += 0x8000) s += String.fromCharCode(...bytes.subarray(i, i + 0x8000));
  return btoa(s).replace(/\+/g, '-').replace(/\//g, '_').replace(/=+$/, '');
}

const B64U = /^[A-Za-z0-9_-]*$/;

/**
 * Decodes base64url (no padding); throws a `TypeError` naming `what` on anything else, or when the length
 * is outside `[min, max]` bytes.
 * @example
 * ```ts
 * fromB64u('-_8', 'salt'); // Uint8Array [251, 255]
 * ```
 */
export function fromB64u(s: unknown, what: string, min = 0, max = 1 << 20): Uint8Array<ArrayBuffer> {
  if (typeof s !== 'string' || !B64U.test(s) || s.length % 4 === 1 || s.length > Math.ceil((max * 4) / 3)) {
    throw new TypeError(`${what} must be base64url of at most ${max} bytes`);
  }
  const bin = atob(s.replace(/-/g, '+').replace(/_/g, '/'));
  const out = new Uint8Array(bin.length);
  for (let i = 0; i < bin.length; i++) out[i] = bin.charCodeAt(i);
  if (out.length < min || out.length > max) throw new TypeError(`${what} must be ${min === max ? min : `${min}..${max}`} bytes, got ${out.length}`);
  return out;
}

/**
 * Lower-case hex.
 * @example
 * ```ts
 * hex(new Uint8Array([1, 171])); // '01ab'
 * ```
 */
export function hex(bytes: Uint8Array): string {
  let s = '';
  for (const b of bytes) s += b.toString(16).padStart(2, '0');
  return s;
}

/**
 * UTF-8 bytes of a string.
 * @example
 * ```ts
 * utf8('hh1'); // Uint8Array [104, 104, 49]
 * ```
 */
export function utf8(s: string): Uint8Array<ArrayBuffer> {
  return new TextEncoder().encode(s) as Uint8Array<ArrayBuffer>;
}

/**
 * Constant-length comparison of two byte strings (for ids, not secrets).
 * @example
 * ```ts
 * sameBytes(a, b);
 * ```
 */
export function sameBytes(a: Uint8Array, b: Uint8Array): boolean {
  if (a.length !== b.length) return false;
  let d = 0;
  for (let i = 0; i < a.length; i++) d |= a[i]! ^ b[i]!;
  return d === 0;
}
