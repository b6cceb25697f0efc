/**
 * Password verifiers, two kinds, each stored as a self-describing string and checked by
 * {@link verifyPassword} in constant time:
 *
 * - **scrypt** (RFC 7914), `N:r:p:saltHex:hashHex`, for a secret a person chooses or types (a passphrase, a
 *   web login): such a secret has few bits, so each guess must cost tens of milliseconds and 16 MiB.
 * - **HMAC-SHA-256**, `hmac-sha256$1$<saltHex>$<macHex>` (version 1: MAC = HMAC-SHA-256(key = 16-byte random
 *   salt, message = the secret's UTF-8)), for a machine-generated random secret of at least 128 bits: the
 *   broker passwords of meters' gateways, households and components (144-bit, provision/keys.ts), and the
 *   activation-code verifier (a 256-bit scrypt output, protocol/household-key.ts). A slow KDF protects a
 *   secret by multiplying the cost of each guess; against 2^128 guesses that factor (2^20 or so) changes
 *   nothing, while provisioning paid it once per user (100,000 households took hours) and the broker once
 *   per CONNECT (a fleet reconnecting after a failover). The activation code itself keeps its scrypt: the
 *   verifier is scrypt(code), so whoever steals the verifier's MAC still pays one scrypt per guessed code.
 *
 * Files written before the fast kind existed (users.json, ucs/activation.json with scrypt entries) still
 * verify: the kind is read from the stored string.
 * @module
 */
import { createHmac, randomBytes, scrypt, scryptSync, timingSafeEqual } from 'node:crypto';

/** scrypt cost parameters used for new hashes: N = 2^14, r = 8, p = 1 (16 MiB, tens of ms). */
export const SCRYPT_PARAMS = { N: 1 << 14, r: 8, p: 1 } as const;
const SALT_LEN = 16;
const HASH_LEN = 32;
/** Prefix of the fast verifier's version 1 ({@link hashRandomSecret}). */
export const SECRET_HASH_PREFIX = 'hmac-sha256$1$';
/** Shortest secret {@link hashRandomSecret} takes: 22 characters, 128 bits when base64url-random. */
export const MIN_RANDOM_SECRET_CHARS = 22;

/** A parsed scrypt hash. */
export interface ScryptHash {
  N: number;
  r: number;
  p: number;
  salt: Buffer;
  hash: Buffer;
}

/** A parsed stored verifier of either kind. */
export type StoredHash = ({ kind: 'scrypt' } & ScryptHash) | { kind: 'hmac-sha256'; salt: Buffer; hash: Buffer };

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
  // Bounds keep a hostile users file from asking for gigabytes of memory or minutes of CPU.
  if (parts.length !== 5 || !(N >= 2 && N <= 1 << 20 && (N & (N - 1)) === 0) || !(R >= 1 && R <= 32) || !(P >= 1 && P <= 16) || !hex(salt) || !hex(hash)) {
    throw new TypeError('scrypt hash must be "N:r:p:saltHex:hashHex" (N a power of two <= 2^20, r <= 32, p <= 16, 16..64-byte salt and hash)');
  }
  return { N, r: R, p: P, salt: Buffer.from(salt!, 'hex'), hash: Buffer.from(hash!, 'hex') };
}

function hex(s: string | undefined): boolean {
  return s !== undefined && /^([0-9a-f]{2}){16,64}$/.test(s);
}

/**
 * Parses a stored verifier of either kind (the module comment); throws `TypeError` naming both formats if it
 * is neither.
 * @example
 * ```ts
 * parseStoredHash(hashRandomSecret(randomBytes(18).toString('base64url'))).kind; // 'hmac-sha256'
 * parseStoredHash(hashPassword('correct horse')).kind;                          // 'scrypt'
 * ```
 */
export function parseStoredHash(stored: string): StoredHash {
  if (typeof stored === 'string' && stored.startsWith(SECRET_HASH_PREFIX)) {
    const [salt, mac, ...rest] = stored.slice(SECRET_HASH_PREFIX.length).split('$');
    if (rest.length > 0 || !hex(salt) || salt!.length !== 2 * SALT_LEN || !hex(mac) || mac!.length !== 2 * HASH_LEN) {
      throw new TypeError(`password hash must be "${SECRET_HASH_PREFIX}<16-byte salt hex>$<32-byte MAC hex>"`);
    }
    return { kind: 'hmac-sha256', salt: Buffer.from(salt!, 'hex'), hash: Buffer.from(mac!, 'hex') };
  }
  try {
    return { kind: 'scrypt', ...parseHash(stored) };
  } catch (e) {
    throw new TypeError(`${(e as Error).message}, or "${SECRET_HASH_PREFIX}saltHex$macHex" for a random secret`);
  }
}

const scryptOptions = (h: Omit<ScryptHash, 'salt' | 'hash'>) => ({ N: h.N, r: h.r, p: h.p, maxmem: 128 * h.N * h.r * h.p + 2 * 1024 * 1024 });

/**
 * scrypt with Node's native implementation on the libuv threadpool (so several run at once, one per core),
 * the memory bound sized from the cost parameters. What the verifiers here use, and what provisioning derives
 * each activation code's values with.
 * @example
 * ```ts
 * const key = await derive(codeBytes, { N: 1 << 14, r: 8, p: 1, salt }, 32);
 * ```
 */
export function derive(password: string | Uint8Array, h: Omit<ScryptHash, 'hash' | 'salt'> & { salt: Uint8Array }, keylen: number): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    scrypt(password, h.salt, keylen, scryptOptions(h), (err, key) => (err ? reject(err) : resolve(key)));
  });
}

const mac = (salt: Uint8Array, secret: string | Uint8Array): Buffer => createHmac('sha256', salt).update(secret).digest();

/**
 * Hashes a password a person chose for the users file (random 16-byte salt, scrypt with {@link SCRYPT_PARAMS}).
 * Synchronous: it is meant for provisioning and tests, not for a server's event loop (the broker verifies with
 * the async scrypt). A machine-generated random secret takes {@link hashRandomSecret} instead.
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
 * The verifier of a machine-generated random secret of at least 128 bits (why no slow KDF: the module
 * comment): `hmac-sha256$1$<salt hex>$<mac hex>`, microseconds to make and to check. Refuses a secret shorter
 * than {@link MIN_RANDOM_SECRET_CHARS} characters (it cannot carry 128 bits as text); it cannot tell a random
 * secret from a chosen one, so never call it with what a person typed.
 * @example
 * ```ts
 * const stored = hashRandomSecret(randomBytes(18).toString('base64url')); // "hmac-sha256$1$<salt>$<mac>"
 * ```
 */
export function hashRandomSecret(secret: string): string {
  if (typeof secret !== 'string' || secret.length < MIN_RANDOM_SECRET_CHARS) {
    throw new TypeError(`a random secret must be at least ${MIN_RANDOM_SECRET_CHARS} characters (128 bits); hash a chosen password with hashPassword`);
  }
  const salt = randomBytes(SALT_LEN);
  return `${SECRET_HASH_PREFIX}${salt.toString('hex')}$${mac(salt, secret).toString('hex')}`;
}

/**
 * Verifies a password against a stored verifier of either kind, comparing in constant time
 * (crypto.timingSafeEqual). Throws `TypeError` if `stored` is not a well-formed verifier.
 * @example
 * ```ts
 * await verifyPassword('s3cret', stored); // true
 * ```
 */
export async function verifyPassword(password: string | Uint8Array, stored: string): Promise<boolean> {
  const h = parseStoredHash(stored);
  const key = h.kind === 'scrypt' ? await derive(password, h, h.hash.length) : mac(h.salt, password);
  return timingSafeEqual(key, h.hash);
}

/**
 * A throw-away verifier of the same kind (and, for scrypt, the same cost) as `like`, for checking a password
 * of an unknown user or household: the refusal then takes as long as for a known one, so timing does not tell
 * which names exist. `like` undefined (no users at all) gives the kind provisioning writes.
 * @example
 * ```ts
 * const dummy = decoyHash(Object.values(users)[0]?.scrypt);
 * await verifyPassword(password, known ?? dummy);
 * ```
 */
export function decoyHash(like: string | undefined): string {
  const secret = randomBytes(32).toString('base64url');
  if (like === undefined) return hashRandomSecret(secret);
  const h = parseStoredHash(like);
  if (h.kind === 'hmac-sha256') return hashRandomSecret(secret);
  const salt = randomBytes(SALT_LEN);
  const hash = scryptSync(secret, salt, h.hash.length, scryptOptions(h));
  return `${h.N}:${h.r}:${h.p}:${salt.toString('hex')}:${hash.toString('hex')}`;
}
