/**
 * Activation codes (made by provisioning: `<keys>/households/<hh>.activation` for the household's letter,
 * `<keys>/ucs/activation.json` for this server). A code is 12 characters from A-Z0-9, printed in groups of four
 * (`ABCD-EFGH-JKLM`); the browser normalises what a household types and sends only its verifier
 * (protocol/household-key.ts `activationVerifier`), of which this file holds a hash (lib/password.ts: the
 * HMAC-SHA-256 kind, the verifier being a 256-bit scrypt output; older files hold scrypt hashes): this server never
 * sees a code, so it cannot derive the household's binding key or stream key from one. Version 1 (hashes of
 * the codes themselves, the server receiving codes in clear) is refused: provision again.
 * @module
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { topicId } from '../protocol/topics.js';

/** `ucs/activation.json`: household -> hash (lib/password.ts, either kind) of its code's verifier (base64url). */
export interface ActivationFile {
  version: 2;
  codes: Record<string, string>;
}

/**
 * Reads and validates `<keysDir>/ucs/activation.json`.
 * @example
 * ```ts
 * const codes = loadActivation(keysDir).codes;
 * ```
 */
export function loadActivation(keysDir: string): ActivationFile {
  const path = join(keysDir, 'ucs', 'activation.json');
  let json: { version?: unknown; codes?: unknown };
  try {
    json = JSON.parse(readFileSync(path, 'utf8')) as typeof json;
  } catch (e) {
    throw new Error(`cannot read activation codes ${path}: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`);
  }
  if (json?.version === 1) throw new Error(`${path}: a version-1 activation file (hashes of the codes, which the browser then sent in clear); provision the key set again`);
  if (json?.version !== 2 || typeof json.codes !== 'object' || json.codes === null) throw new Error(`${path}: not a version-2 activation file`);
  const codes: Record<string, string> = {};
  for (const [hh, hash] of Object.entries(json.codes as Record<string, unknown>)) {
    topicId(hh, `${path}: household`);
    if (typeof hash !== 'string') throw new Error(`${path}: code hash of ${hh} must be a string`);
    codes[hh] = hash;
  }
  return { version: 2, codes };
}

