/**
 * Activation codes (made by provisioning: `<keys>/households/<hh>.activation` for the household's letter,
 * `<keys>/ucs/activation.json` with their scrypt hashes for this server). A code is 12 characters from
 * A-Z0-9, printed in groups of four (`ABCD-EFGH-JKLM`); what a household types is normalised first.
 * @module
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { topicId } from '../protocol/topics.js';

/** `ucs/activation.json`: household -> scrypt hash (broker/users.ts format) of its code. */
export interface ActivationFile {
  version: 1;
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
  if (json?.version !== 1 || typeof json.codes !== 'object' || json.codes === null) throw new Error(`${path}: not a version-1 activation file`);
  const codes: Record<string, string> = {};
  for (const [hh, hash] of Object.entries(json.codes as Record<string, unknown>)) {
    topicId(hh, `${path}: household`);
    if (typeof hash !== 'string') throw new Error(`${path}: code hash of ${hh} must be a string`);
    codes[hh] = hash;
  }
  return { version: 1, codes };
}

export { normaliseCode } from '../protocol/household-key.js';
