/**
 * Activation codes (made by provisioning: `<keys>/households/<hh>.activation` for the household's letter,
 * `<keys>/ucs/activation.json` for this server). A code is 12 characters from A-Z0-9, printed in groups of four
 * (`ABCD-EFGH-JKLM`); the browser normalises what a household types and sends only its verifier
 * (protocol/household-key.ts `activationSecrets`), of which this file holds a hash (lib/password.ts: the
 * HMAC-SHA-256 kind, the verifier being a 256-bit output of scrypt; older files hold scrypt hashes): this server
 * never sees a code, so it cannot derive the household's binding key or stream key from one.
 *
 * The file's version says which derivation its verifiers are of, which the browser must know before it derives
 * (`GET /api/activation`): version 3, derivation 2 (one scrypt and HKDF, what provisioning writes); version 2,
 * derivation 1 (three scrypts, key sets provisioned before; they keep working unchanged). Version 1 (hashes of
 * the codes themselves, the server receiving codes in clear) is refused: provision again.
 * @module
 */
import { readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';
import type { ActivationDerivation } from '../protocol/household-key.js';
import { ACTIVATION_FILE_DERIVATION } from '../lib/keyset.js';
import { topicId } from '../protocol/topics.js';

/** `ucs/activation.json`: household -> hash (lib/password.ts, either kind) of its code's verifier (base64url). */
export interface ActivationFile {
  version: 2 | 3;
  /** The derivation the verifiers are of (protocol/household-key.ts), from the version. */
  derivation: ActivationDerivation;
  codes: Record<string, string>;
}

let last: { path: string; stamp: string; file: ActivationFile } | null = null;

/**
 * Reads and validates `<keysDir>/ucs/activation.json`. The file of a large fleet is megabytes: it is parsed
 * again only when its size or modification time changed (a re-provisioned key set), not on every registration.
 * @example
 * ```ts
 * const { derivation, codes } = loadActivation(keysDir);
 * ```
 */
export function loadActivation(keysDir: string): ActivationFile {
  const path = join(keysDir, 'ucs', 'activation.json');
  let json: { version?: unknown; codes?: unknown };
  let stamp: string;
  try {
    const st = statSync(path);
    stamp = `${st.size}:${st.mtimeMs}:${st.ino}`;
    if (last?.path === path && last.stamp === stamp) return last.file;
    json = JSON.parse(readFileSync(path, 'utf8')) as typeof json;
  } catch (e) {
    throw new Error(`cannot read activation codes ${path}: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`);
  }
  if (json?.version === 1) throw new Error(`${path}: a version-1 activation file (hashes of the codes, which the browser then sent in clear); provision the key set again`);
  const version = json?.version;
  if ((version !== 2 && version !== 3) || typeof json.codes !== 'object' || json.codes === null) throw new Error(`${path}: not a version-2 or version-3 activation file`);
  const codes: Record<string, string> = {};
  for (const [hh, hash] of Object.entries(json.codes as Record<string, unknown>)) {
    topicId(hh, `${path}: household`);
    if (typeof hash !== 'string') throw new Error(`${path}: code hash of ${hh} must be a string`);
    codes[hh] = hash;
  }
  const file: ActivationFile = { version, derivation: ACTIVATION_FILE_DERIVATION[version], codes };
  last = { path, stamp, file };
  return file;
}
