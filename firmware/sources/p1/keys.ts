/**
 * The user's keys for Luxembourg's encrypted P1 port: from flags (hex) or a key file. The file is JSON
 * `{"key": "<32 hex>", "authKey": "<32 hex>"}` and must not be readable by group or others (0600).
 * Key material never appears in an error message or a log line.
 * @module
 */
import { readFileSync, statSync } from 'node:fs';
import type { P1Keys } from './dlms.js';

function hexKey(v: unknown, what: string): Buffer {
  if (typeof v !== 'string' || !/^[0-9A-Fa-f]{32}$/.test(v)) throw new TypeError(`${what} must be 32 hex digits (16 bytes)`);
  return Buffer.from(v, 'hex');
}

/**
 * Parses the two keys given as hex text.
 * @example
 * ```ts
 * parseP1Keys('00112233445566778899aabbccddeeff', 'ffeeddccbbaa99887766554433221100');
 * ```
 */
export function parseP1Keys(key: string, authKey: string): P1Keys {
  return { key: hexKey(key, 'P1 key'), authKey: hexKey(authKey, 'P1 authentication key') };
}

/**
 * Reads a P1 key file; refuses one that group or others may read, or that is malformed.
 * @example
 * ```ts
 * const keys = loadP1KeyFile('p1.key.json');
 * ```
 */
export function loadP1KeyFile(file: string): P1Keys {
  let mode: number;
  let text: string;
  try {
    mode = statSync(file).mode;
    text = readFileSync(file, 'utf8');
  } catch (e) {
    throw new Error(`cannot read P1 key file ${file}: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`);
  }
  if (process.platform !== 'win32' && (mode & 0o077) !== 0) throw new Error(`P1 key file ${file} is readable by group or others (chmod 600 it)`);
  let o: { key?: unknown; authKey?: unknown };
  try {
    o = JSON.parse(text) as typeof o;
  } catch {
    throw new Error(`P1 key file ${file} is not JSON {"key": "<32 hex>", "authKey": "<32 hex>"}`);
  }
  if (typeof o !== 'object' || o === null) throw new Error(`P1 key file ${file} is not JSON {"key": "<32 hex>", "authKey": "<32 hex>"}`);
  try {
    return { key: hexKey(o.key, 'key'), authKey: hexKey(o.authKey, 'authKey') };
  } catch (e) {
    throw new Error(`P1 key file ${file}: ${(e as Error).message}`);
  }
}
