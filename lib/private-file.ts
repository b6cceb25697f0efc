/**
 * State files are secret to their process: every one is created mode 0600 (its folder 0700) before anything
 * opens it, so that SQLite's `-wal` and `-shm`, which take the database file's mode when they are created,
 * are 0600 too. (Setting the mode after opening, as before, left them 0644: the WAL exists by then.)
 * @module
 */
import { chmodSync, closeSync, mkdirSync, openSync } from 'node:fs';
import { dirname } from 'node:path';

/**
 * Creates `path` (and its folder) private if it does not exist, and makes an existing one private; `':memory:'`
 * is left alone. Call it before opening the file.
 * @example
 * ```ts
 * privateFile('state/pes.sqlite');
 * const db = new Database('state/pes.sqlite');
 * ```
 */
export function privateFile(path: string): void {
  if (path === ':memory:' || path === '') return;
  mkdirSync(dirname(path), { recursive: true, mode: 0o700 });
  closeSync(openSync(path, 'a', 0o600));
  chmodSync(path, 0o600);
}
