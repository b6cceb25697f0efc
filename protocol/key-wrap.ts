/**
 * Meter key transfer: a new AES-256 meter key wrapped under the meter's key-encryption key (KEK) with AES key
 * wrap (RFC 3394, `id-aes256-wrap` in node:crypto), as the DLMS/COSEM Security Setup object (class 64) method 2
 * `global_key_transfer` carries a new global key wrapped under the master key (KEK).
 *
 * One change from DLMS: the 8-byte initial value of the wrap is not the RFC's default `A6A6A6A6A6A6A6A6` but
 * `A6A6A6A6 || generation` (4 bytes, big-endian; RFC 3394 §2.2.3.2 allows an alternative initial value). The
 * generation is thereby authenticated with the key: DLMS protects the method invocation with its ciphered APDU,
 * this serial line has no ciphered downlink, and without the binding an old transfer re-labelled with a higher
 * generation would roll a meter back to a retired key. See docs/protocol.md §7.1.
 * @module
 */
import { createCipheriv, createDecipheriv } from 'node:crypto';

/** Length of a wrapped AES-256 key: the key plus the 8-byte integrity check value. */
export const WRAPPED_KEY_LEN = 40;
/** Highest key generation (4 bytes); generation 0 is the key from provisioning, never transferred. */
export const MAX_KEY_GENERATION = 0xffffffff;

/**
 * The RFC 3394 initial value that binds a key generation: `A6A6A6A6 || generation` (big-endian).
 * @example
 * ```ts
 * keyWrapIv(1); // a6a6a6a6 00000001
 * ```
 */
export function keyWrapIv(generation: number): Buffer {
  if (!Number.isSafeInteger(generation) || generation < 1 || generation > MAX_KEY_GENERATION) throw new RangeError(`key generation must be 1..${MAX_KEY_GENERATION}`);
  const iv = Buffer.from('a6a6a6a600000000', 'hex');
  iv.writeUInt32BE(generation, 4);
  return iv;
}

function checkKey(k: Uint8Array, what: string): void {
  if (!(k instanceof Uint8Array) || k.length !== 32) throw new TypeError(`${what} must be 32 bytes (AES-256)`);
}

/**
 * Wraps a new meter key of `generation` under the meter's KEK.
 * @example
 * ```ts
 * const wrapped = wrapMeterKey(kek, 1, randomBytes(32)); // 40 bytes
 * ```
 */
export function wrapMeterKey(kek: Uint8Array, generation: number, key: Uint8Array): Buffer {
  checkKey(kek, 'KEK');
  checkKey(key, 'key');
  const c = createCipheriv('id-aes256-wrap', kek, keyWrapIv(generation));
  return Buffer.concat([c.update(key), c.final()]);
}

/**
 * Unwraps a transferred key; throws `Error('wrapped key does not authenticate')` when the wrapped bytes, the
 * generation or the KEK do not match (a tampered or re-labelled transfer).
 * @example
 * ```ts
 * const key = unwrapMeterKey(kek, 1, wrapped);
 * ```
 */
export function unwrapMeterKey(kek: Uint8Array, generation: number, wrapped: Uint8Array): Buffer {
  checkKey(kek, 'KEK');
  const iv = keyWrapIv(generation);
  if (!(wrapped instanceof Uint8Array) || wrapped.length !== WRAPPED_KEY_LEN) throw new TypeError(`wrapped key must be ${WRAPPED_KEY_LEN} bytes`);
  try {
    const d = createDecipheriv('id-aes256-wrap', kek, iv);
    return Buffer.concat([d.update(wrapped), d.final()]);
  } catch {
    throw new Error('wrapped key does not authenticate');
  }
}
