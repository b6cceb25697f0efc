/**
 * Password hashing for every secret a person or component types: broker passwords, activation codes, web
 * logins. scrypt (RFC 7914) via node:crypto, stored as `N:r:p:saltHex:hashHex`; verification compares in
 * constant time.
 * @module
 */
import { randomBytes, scrypt, scryptSync, timingSafeEqual } from 'node:crypto';

/** scrypt cost parameters used for new hashes: N = 2^14, r = 8, p = 1 (16 MiB, tens of ms). */
export const SCRYPT_PARAMS = { N: 1 << 14, r: 8, p: 1 } as const;
const SALT_LEN = 16;
const HASH_LEN = 32;

/** A parsed scrypt hash. */
export interface ScryptHash {
  N: number;
  r: number;
  p: number;
  salt: Buffer;
  hash: Buffer;
}

/**
 * Parses a stored scrypt hash `N:r:p:saltHex:hashHex`; throws `TypeError` if it is malformed or its cost is
 * out of bounds.
 * @example
 * ```ts
 * parseHash(hashPassword('s3cret')).N; // 16384
 * ```
 */
export function parseHash(stored: string): ScryptHash {
  const parts = typeof stored === 'string' ? stored.split(':') : [];
  const [n, r, p, salt, hash] = parts;
  const int = (s: string | undefined) => (s !== undefined && /^[0-9]{1,8}$/.test(s) ? Number(s) : NaN);
  const N = int(n);
  const R = int(r);
  const P = int(p);
  const hex = (s: string | undefined) => s !== undefined && /^([0-9a-f]{2}){16,64}$/.test(s);
  // Bounds keep a hostile users file from asking for gigabytes of memory or minutes of CPU.
  if (parts.length !== 5 || !(N >= 2 && N <= 1 << 20 && (N & (N - 1)) === 0) || !(R >= 1 && R <= 32) || !(P >= 1 && P <= 16) || !hex(salt) || !hex(hash)) {
    throw new TypeError('scrypt hash must be "N:r:p:saltHex:hashHex" (N a power of two <= 2^20, r <= 32, p <= 16, 16..64-byte salt and hash)');
  }
  return { N, r: R, p: P, salt: Buffer.from(salt!, 'hex'), hash: Buffer.from(hash!, 'hex') };
}

const scryptOptions = (h: Omit<ScryptHash, 'salt' | 'hash'>) => ({ N: h.N, r: h.r, p: h.p, maxmem: 128 * h.N * h.r * h.p + 2 * 1024 * 1024 });

function derive(password: string | Uint8Array, h: Omit<ScryptHash, 'hash'>, keylen: number): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    scrypt(password, h.salt, keylen, scryptOptions(h), (err, key) => (err ? reject(err) : resolve(key)));
  });
}

/**
 * Hashes a password for the users file (random 16-byte salt, {@link SCRYPT_PARAMS}). Synchronous: it is
 * meant for provisioning, not for a server's event loop (the broker verifies with the async scrypt).
 * @example
 * ```ts
 * const stored = hashPassword('s3cret'); // "16384:8:1:<salt hex>:<hash hex>"
 * ```
 */
export function hashPassword(password: string): string {
  if (typeof password !== 'string' || password.length === 0) throw new TypeError('password must be a non-empty string');
  const salt = randomBytes(SALT_LEN);
  const hash = scryptSync(password, salt, HASH_LEN, scryptOptions(SCRYPT_PARAMS));
  const { N, r, p } = SCRYPT_PARAMS;
  return `${N}:${r}:${p}:${salt.toString('hex')}:${hash.toString('hex')}`;
}

/**
 * Verifies a password against a stored scrypt hash, comparing in constant time (crypto.timingSafeEqual).
 * Throws `TypeError` if `stored` is not a well-formed hash.
 * @example
 * ```ts
 * await verifyPassword('s3cret', stored); // true
 * ```
 */
export async function verifyPassword(password: string | Uint8Array, stored: string): Promise<boolean> {
  const h = parseHash(stored);
  const key = await derive(password, h, h.hash.length);
  return timingSafeEqual(key, h.hash);
}

