/**
 * AES-256-GCM: node:crypto (protocol/aead.ts, what Node processes use) vs @noble/ciphers `gcm` (what browser
 * code uses; the `_baseline` figures), for a 40-byte payload (one ciphered reading frame) and 1 KiB. Both
 * with a 16-byte tag (noble's only length) and a 13-byte AAD, same key, IV and data; each side checks it
 * opens the other's output before anything is timed.
 * @module
 */
import { gcm } from '@noble/ciphers/aes.js';
import { randomBytes } from 'node:crypto';
import { gcmDecrypt, gcmEncrypt } from '../protocol/aead.js';
import { measurePair, progress } from './index.js';

/**
 * The `aead` section of `npm run bench`.
 * @example
 * ```ts
 * const section = await run(); // { encrypt_40B_us, encrypt_40B_us_baseline, ... }
 * ```
 */
export async function run(): Promise<Record<string, unknown>> {
  const key = randomBytes(32);
  const iv = randomBytes(12);
  const aad = randomBytes(13);
  const out: Record<string, unknown> = { algorithm: 'AES-256-GCM', tag_bytes: 16 };
  const opts = { unit: 'us' as const, minReps: 2000, minMs: 500 };
  for (const [label, size] of [
    ['40B', 40],
    ['1KiB', 1024],
  ] as const) {
    progress(`aead ${label}`);
    const pt = randomBytes(size);
    const ours = gcmEncrypt(key, iv, pt, aad, 16);
    const noble = gcm(key, iv, aad).encrypt(pt);
    if (!Buffer.from(ours).equals(Buffer.from(noble))) throw new Error('node:crypto and @noble/ciphers disagree');
    if (!Buffer.from(gcmDecrypt(key, iv, noble, aad, 16)).equals(pt) || !Buffer.from(gcm(key, iv, aad).decrypt(ours)).equals(pt)) {
      throw new Error('AES-GCM round trip failed');
    }
    const enc = measurePair(() => gcmEncrypt(key, iv, pt, aad, 16), () => gcm(key, iv, aad).encrypt(pt), opts);
    const dec = measurePair(() => gcmDecrypt(key, iv, ours, aad, 16), () => gcm(key, iv, aad).decrypt(ours), opts);
    out[`encrypt_${label}_us`] = enc.ours.median;
    out[`encrypt_${label}_us_baseline`] = enc.baseline.median;
    out[`decrypt_${label}_us`] = dec.ours.median;
    out[`decrypt_${label}_us_baseline`] = dec.baseline.median;
  }
  return out;
}
