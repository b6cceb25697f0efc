/**
 * AES-GCM from @noble/ciphers (pure JS, v2 API), used as an implementation independent of node:crypto.
 * noble's `gcm` only produces 16-byte tags; a 12-byte tag is the leftmost 96 bits of the same tag
 * (NIST SP 800-38D §5.2.1.2), so we decrypt with CTR from counter block J0 + 1 = IV ‖ 00000002 (§7.2) and
 * recompute the full tag with `gcm` to compare its prefix.
 */
import { ctr, gcm } from '@noble/ciphers/aes.js';

/** Opens ciphertext ‖ tag (tag of `tagLen` bytes); throws Error('noble: tag mismatch') on a bad tag. */
export function nobleGcmOpen(key: Uint8Array, iv: Uint8Array, sealed: Uint8Array, aad: Uint8Array, tagLen: 12 | 16): Buffer {
  if (iv.length !== 12) throw new Error('noble: 12-byte IV expected');
  const ct = sealed.subarray(0, sealed.length - tagLen);
  const tag = sealed.subarray(sealed.length - tagLen);
  if (tagLen === 16) return Buffer.from(gcm(key, iv, aad).decrypt(sealed));
  const counter = new Uint8Array(16);
  counter.set(iv);
  counter[15] = 2;
  const pt = ctr(key, counter).decrypt(ct);
  const full = gcm(key, iv, aad).encrypt(pt);
  if (!Buffer.from(full.subarray(ct.length, ct.length + tagLen)).equals(Buffer.from(tag))) throw new Error('noble: tag mismatch');
  return Buffer.from(pt);
}

/** Seals with noble: ciphertext ‖ tag truncated to `tagLen`. */
export function nobleGcmSeal(key: Uint8Array, iv: Uint8Array, plaintext: Uint8Array, aad: Uint8Array, tagLen: 12 | 16): Buffer {
  const full = gcm(key, iv, aad).encrypt(plaintext);
  return Buffer.from(full.subarray(0, plaintext.length + tagLen));
}
