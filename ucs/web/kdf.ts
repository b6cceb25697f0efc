/**
 * The household password, turned into two independent secrets in the browser (RFC 7914 scrypt, then
 * RFC 5869 HKDF-SHA-256 with two `info` labels):
 * - `wrapKey` (AES-256) encrypts the household's private key; it never leaves the browser;
 * - `auth` (32 bytes) is what the browser sends to log in; the server keeps only a second scrypt hash of it.
 * HKDF outputs under different labels are independent, so `auth` (and the server's hash of it) says nothing
 * about `wrapKey`; and the server never sees the password itself. See ucs/README.md.
 * @module
 */
import { hkdf } from '@noble/hashes/hkdf.js';
import { scryptAsync } from '@noble/hashes/scrypt.js';
import { sha256 } from '@noble/hashes/sha2.js';
import { b64u, fromB64u, utf8 } from './bytes.js';

/** Stored with the wrapped key, so a later login derives the same secrets. */
export interface KdfParams {
  alg: 'scrypt';
  N: number;
  r: number;
  p: number;
  /** base64url, 16..64 bytes. */
  salt: string;
}

/**
 * Cost of new derivations: N = 2^17, r = 8, p = 1 (128 MiB, about a second in a browser) — the OWASP
 * Password Storage Cheat Sheet's scrypt setting.
 */
export const KDF_COST = { N: 1 << 17, r: 8, p: 1 } as const;
/** Weakest cost accepted when reading stored parameters (a server cannot downgrade below this). */
export const KDF_MIN_N = 1 << 15;
const KDF_MAX_N = 1 << 20;

export const INFO_WRAP = 'smartermeter/ucs/v1/private-key-wrap';
export const INFO_AUTH = 'smartermeter/ucs/v1/login';

/** Shortest password accepted for a new account (NIST SP 800-63B asks for at least 8; we ask for more). */
export const MIN_PASSWORD = 10;

/**
 * Fresh parameters with a random 16-byte salt.
 * @example
 * ```ts
 * const kdf = newKdfParams(); // { alg: 'scrypt', N: 131072, r: 8, p: 1, salt: '…' }
 * ```
 */
export function newKdfParams(cost: { N: number; r: number; p: number } = KDF_COST): KdfParams {
  return checkKdf({ alg: 'scrypt', ...cost, salt: b64u(crypto.getRandomValues(new Uint8Array(16))) });
}

/**
 * Validates parameters read from the server or a request; throws `TypeError` naming the field.
 * @example
 * ```ts
 * checkKdf(JSON.parse(text));
 * ```
 */
export function checkKdf(v: unknown): KdfParams {
  const k = v as Partial<KdfParams> | null;
  if (typeof k !== 'object' || k === null || k.alg !== 'scrypt') throw new TypeError('kdf.alg must be "scrypt"');
  const { N, r, p } = k;
  if (!Number.isInteger(N) || N! < KDF_MIN_N || N! > KDF_MAX_N || (N! & (N! - 1)) !== 0) {
    throw new TypeError(`kdf.N must be a power of two between ${KDF_MIN_N} and ${KDF_MAX_N}`);
  }
  if (!Number.isInteger(r) || r! < 8 || r! > 32) throw new TypeError('kdf.r must be an integer between 8 and 32');
  if (!Number.isInteger(p) || p! < 1 || p! > 4) throw new TypeError('kdf.p must be an integer between 1 and 4');
  fromB64u(k.salt, 'kdf.salt', 16, 64);
  return { alg: 'scrypt', N: N!, r: r!, p: p!, salt: k.salt! };
}

/** What {@link deriveSecrets} returns. */
export interface PasswordSecrets {
  /** AES-256 key that wraps the private key. */
  wrapKey: Uint8Array<ArrayBuffer>;
  /** Login authenticator sent to the server. */
  auth: Uint8Array<ArrayBuffer>;
}

/**
 * Derives the wrapping key and the login authenticator from a password (NFKC-normalised).
 * @example
 * ```ts
 * const { wrapKey, auth } = await deriveSecrets('correct horse battery', kdf);
 * ```
 */
export async function deriveSecrets(password: string, kdf: KdfParams, onProgress?: (f: number) => void): Promise<PasswordSecrets> {
  const k = checkKdf(kdf);
  const master = await scryptAsync(utf8(password.normalize('NFKC')), fromB64u(k.salt, 'kdf.salt'), {
    N: k.N,
    r: k.r,
    p: k.p,
    dkLen: 32,
    maxmem: 128 * k.N * k.r * k.p + (4 << 20),
    ...(onProgress ? { onProgress } : {}),
  });
  try {
    return {
      wrapKey: new Uint8Array(hkdf(sha256, master, undefined, utf8(INFO_WRAP), 32)) as Uint8Array<ArrayBuffer>,
      auth: new Uint8Array(hkdf(sha256, master, undefined, utf8(INFO_AUTH), 32)) as Uint8Array<ArrayBuffer>,
    };
  } finally {
    master.fill(0);
  }
}

/**
 * Why a new password is not acceptable, or `null`.
 * @example
 * ```ts
 * passwordProblem('short', 'hh1'); // 'Choose a password of at least 10 characters.'
 * ```
 */
export function passwordProblem(password: string, household: string): string | null {
  if ([...password].length < MIN_PASSWORD) return `Choose a password of at least ${MIN_PASSWORD} characters.`;
  if ([...password].length > 256) return 'Choose a password of at most 256 characters.';
  if (password.toLowerCase().includes(household.toLowerCase()) && password.length < household.length + MIN_PASSWORD) {
    return 'Choose a password that is not based on your household id.';
  }
  return null;
}
