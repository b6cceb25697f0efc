/**
 * AES-256-GCM for Node processes, via node:crypto (measured ~4x faster than @noble/ciphers for short
 * frames; `npm run bench` reports both). Browser code (ucs/web/seal.ts) uses WebCrypto's AES-GCM with the
 * same layout; @noble/ciphers is the independent implementation the tests check both against.
 * @module
 */
import { createCipheriv, createDecipheriv } from 'node:crypto';

export const KEY_LEN = 32;
export const IV_LEN = 12;
export const GCM_TAG_LEN = 12;

function check(key: Uint8Array, iv: Uint8Array, tagLen: number): void {
  if (!(key instanceof Uint8Array) || key.length !== KEY_LEN) throw new TypeError('AES-256-GCM key must be 32 bytes');
  if (!(iv instanceof Uint8Array) || iv.length !== IV_LEN) throw new TypeError('GCM IV must be 12 bytes');
  if (tagLen !== 12 && tagLen !== 16) throw new TypeError('GCM tag must be 12 or 16 bytes');
}

/**
 * AES-256-GCM encryption; returns ciphertext || tag.
 * @example
 * ```ts
 * const ct = gcmEncrypt(key, iv, plaintext, aad);
 * ```
 */
export function gcmEncrypt(key: Uint8Array, iv: Uint8Array, plaintext: Uint8Array, aad: Uint8Array, tagLen = GCM_TAG_LEN): Uint8Array {
  check(key, iv, tagLen);
  const c = createCipheriv('aes-256-gcm', key, iv, { authTagLength: tagLen });
  c.setAAD(aad);
  return Buffer.concat([c.update(plaintext), c.final(), c.getAuthTag()]);
}

/**
 * AES-256-GCM decryption of ciphertext || tag; throws `Error('authentication failed')` if the tag,
 * key, IV or AAD do not match.
 * @example
 * ```ts
 * const pt = gcmDecrypt(key, iv, ct, aad);
 * ```
 */
export function gcmDecrypt(key: Uint8Array, iv: Uint8Array, sealed: Uint8Array, aad: Uint8Array, tagLen = GCM_TAG_LEN): Uint8Array {
  check(key, iv, tagLen);
  if (!(sealed instanceof Uint8Array) || sealed.length < tagLen) throw new Error('authentication failed');
  const d = createDecipheriv('aes-256-gcm', key, iv, { authTagLength: tagLen });
  d.setAAD(aad);
  d.setAuthTag(sealed.subarray(sealed.length - tagLen));
  const head = d.update(sealed.subarray(0, sealed.length - tagLen));
  try {
    return Buffer.concat([head, d.final()]);
  } catch {
    head.fill(0);
    throw new Error('authentication failed');
  }
}
