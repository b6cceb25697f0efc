/**
 * The broker's users file (`<keys>/broker/users.json`): scrypt password hashes and topic ACLs.
 *
 * Format: `{"version":1,"users":{"<name>":{"scrypt":"N:r:p:saltHex:hashHex","publish":[...],"subscribe":[...]}}}`.
 * Hashes use scrypt (RFC 7914) via node:crypto; verification compares in constant time.
 * @module
 */
import { randomBytes, scrypt, scryptSync, timingSafeEqual } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { buildAcl, isValidFilter, type AclEntry } from './acl.js';

export { buildAcl, type AclEntry } from './acl.js';

/** One user of the broker. */
export interface UserEntry extends AclEntry {
  /** `N:r:p:saltHex:hashHex`. */
  scrypt: string;
}

/** The parsed users file. */
export interface UsersFile {
  version: 1;
  users: Record<string, UserEntry>;
}

/** scrypt cost parameters used for new hashes: N = 2^14, r = 8, p = 1 (16 MiB, tens of ms). */
export const SCRYPT_PARAMS = { N: 1 << 14, r: 8, p: 1 } as const;
const SALT_LEN = 16;
const HASH_LEN = 32;
/**
 * The syntax of a broker user name.
 * @example
 * ```ts
 * USER_NAME.test('household-hh1'); // true
 * ```
 */
export const USER_NAME = /^[A-Za-z0-9_.-]{1,128}$/;

interface ScryptHash {
  N: number;
  r: number;
  p: number;
  salt: Buffer;
  hash: Buffer;
}

function parseHash(stored: string): ScryptHash {
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

/**
 * Validates a parsed users file; throws `TypeError` naming the first bad field.
 * @example
 * ```ts
 * const users = parseUsers(JSON.parse(text));
 * ```
 */
export function parseUsers(json: unknown): UsersFile {
  const o = json as { version?: unknown; users?: unknown };
  if (typeof o !== 'object' || o === null || o.version !== 1) throw new TypeError('users file: version must be 1');
  if (typeof o.users !== 'object' || o.users === null || Array.isArray(o.users)) throw new TypeError('users file: "users" must be an object');
  const users: Record<string, UserEntry> = {};
  for (const [name, raw] of Object.entries(o.users as Record<string, unknown>)) {
    if (!USER_NAME.test(name)) throw new TypeError(`users file: bad user name ${JSON.stringify(name)}`);
    const u = raw as Partial<UserEntry>;
    if (typeof u !== 'object' || u === null) throw new TypeError(`users file: users.${name} must be an object`);
    try {
      parseHash(u.scrypt as string);
    } catch (e) {
      throw new TypeError(`users file: users.${name}.${(e as Error).message}`);
    }
    const filters = (k: 'publish' | 'subscribe') => {
      const list = u[k];
      if (!Array.isArray(list) || !list.every((f) => typeof f === 'string' && isValidFilter(f))) {
        throw new TypeError(`users file: users.${name}.${k} must be a list of valid MQTT topic filters`);
      }
      return [...list];
    };
    users[name] = { scrypt: u.scrypt as string, publish: filters('publish'), subscribe: filters('subscribe') };
  }
  return { version: 1, users };
}

/**
 * Reads and validates a users file.
 * @example
 * ```ts
 * const users = loadUsers(brokerUsersPath(keysDir));
 * ```
 */
export function loadUsers(path: string): UsersFile {
  let json: unknown;
  try {
    json = JSON.parse(readFileSync(path, 'utf8'));
  } catch (e) {
    throw new Error(`cannot read broker users file ${path}: ${(e as Error).message}`);
  }
  return parseUsers(json);
}

/**
 * Builds the users file of a fleet: the ACL of {@link buildAcl} plus a scrypt hash of each user's password.
 * Every ACL user must have a password in `passwords`.
 * @example
 * ```ts
 * const file = buildUsers({ gateways: ['gw-n1'], households: ['h1'] }, passwords);
 * writeFileSync(brokerUsersPath(dir), JSON.stringify(file), { mode: 0o600 });
 * ```
 */
export function buildUsers(
  fleet: { gateways: string[]; households: string[] },
  passwords: Record<string, string> | Map<string, string>,
): UsersFile {
  const get = (name: string) => (passwords instanceof Map ? passwords.get(name) : Object.hasOwn(passwords, name) ? passwords[name] : undefined);
  const users: Record<string, UserEntry> = {};
  for (const [name, a] of Object.entries(buildAcl(fleet))) {
    const pw = get(name);
    if (typeof pw !== 'string' || pw.length === 0) throw new TypeError(`no password for broker user ${name}`);
    users[name] = { scrypt: hashPassword(pw), ...a };
  }
  return { version: 1, users };
}
