/**
 * The broker's users file (`<keys>/broker/users.json`): password verifiers and topic ACLs.
 *
 * Format: `{"version":1,"users":{"<name>":{"scrypt":"<verifier>","publish":[...],"subscribe":[...]}}}`. The
 * verifier is either kind of lib/password.ts: `N:r:p:saltHex:hashHex` (scrypt, what files written before
 * 2026-12 hold, and {@link buildUsers} for chosen passwords) or `hmac-sha256$1$saltHex$macHex` (what
 * `provision` writes for its 144-bit random passwords). The field keeps its historical name `scrypt` so that
 * every existing file still loads.
 * @module
 */
import { readFileSync } from 'node:fs';
import { buildAcl, isValidFilter, type AclEntry } from '../protocol/acl.js';
import { hashPassword, parseStoredHash } from './password.js';

/** One user of the broker. */
export interface UserEntry extends AclEntry {
  /** The password's verifier (lib/password.ts `parseStoredHash`; the field name is historical). */
  scrypt: string;
}

/** The parsed users file. */
export interface UsersFile {
  version: 1;
  users: Record<string, UserEntry>;
}

/**
 * The syntax of a broker user name.
 * @example
 * ```ts
 * USER_NAME.test('household-hh1'); // true
 * ```
 */
export const USER_NAME = /^[A-Za-z0-9_.-]{1,128}$/;

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
      parseStoredHash(u.scrypt as string);
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
 * Every ACL user must have a password in `passwords` (with `e2e`, the `guardian` too).
 * @example
 * ```ts
 * const file = buildUsers({ gateways: ['gw-n1'], households: ['h1'] }, passwords);
 * writeFileSync(brokerUsersPath(dir), JSON.stringify(file), { mode: 0o600 });
 * ```
 */
export function buildUsers(
  fleet: { gateways: string[]; households: string[] },
  passwords: Record<string, string> | Map<string, string>,
  options: { e2e?: boolean } = {},
): UsersFile {
  const get = (name: string) => (passwords instanceof Map ? passwords.get(name) : Object.hasOwn(passwords, name) ? passwords[name] : undefined);
  const users: Record<string, UserEntry> = {};
  for (const [name, a] of Object.entries(buildAcl(fleet, options))) {
    const pw = get(name);
    if (typeof pw !== 'string' || pw.length === 0) throw new TypeError(`no password for broker user ${name}`);
    users[name] = { scrypt: hashPassword(pw), ...a };
  }
  return { version: 1, users };
}
