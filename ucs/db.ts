/**
 * The UCS server's database (SQLite via better-sqlite3). It holds nothing that reveals a reading:
 * - `accounts`: per household the public key (SPKI), its kid, the scrypt parameters and the private key
 *   encrypted in the browser (AES-256-GCM under a password-derived key the server never sees), and a scrypt
 *   hash of the login authenticator (itself derived from the password in the browser);
 * - `used_codes`: which activation code (by its provisioning hash) registered which household, when;
 * - `tickets`, `sessions`: SHA-256 of random tokens (a dump cannot be replayed as a cookie);
 * - `attempt_failures`: times of failed activation and login attempts, by household and source address, for
 *   the throttling (ucs/server/throttle.ts);
 * - `secrets`: random server secrets (the key of the decoy KDF parameters);
 * - `archive`: the household streams exactly as the PES sealed them (ciphertext), for history re-fetch.
 * @module
 */
import { privateFile } from '../lib/private-file.js';
import { createHash, randomBytes } from 'node:crypto';
import Database from 'better-sqlite3';
import { b64u } from './web/bytes.js';

const SCHEMA = `
CREATE TABLE IF NOT EXISTS accounts (
  household TEXT PRIMARY KEY,
  spki BLOB NOT NULL,
  kid BLOB NOT NULL,
  kdf TEXT NOT NULL,
  key_iv BLOB NOT NULL,
  key_ct BLOB NOT NULL,
  auth_hash TEXT NOT NULL,
  created_at INTEGER NOT NULL,
  updated_at INTEGER NOT NULL,
  key_published INTEGER NOT NULL DEFAULT 0,
  binding BLOB
);
CREATE TABLE IF NOT EXISTS used_codes (
  household TEXT NOT NULL,
  code_hash TEXT NOT NULL,
  used_at INTEGER NOT NULL,
  PRIMARY KEY (household, code_hash)
);
CREATE TABLE IF NOT EXISTS tickets (
  token TEXT PRIMARY KEY,
  household TEXT NOT NULL,
  code_hash TEXT NOT NULL,
  expires_at INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS sessions (
  token TEXT PRIMARY KEY,
  household TEXT NOT NULL,
  created_at INTEGER NOT NULL,
  last_seen INTEGER NOT NULL,
  ended INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX IF NOT EXISTS sessions_household ON sessions (household);
DROP TABLE IF EXISTS failures;
CREATE TABLE IF NOT EXISTS attempt_failures (kind TEXT NOT NULL, household TEXT NOT NULL, source TEXT NOT NULL, at INTEGER NOT NULL);
CREATE INDEX IF NOT EXISTS attempt_failures_household ON attempt_failures (kind, household, at);
CREATE INDEX IF NOT EXISTS attempt_failures_source ON attempt_failures (kind, source, at);
CREATE TABLE IF NOT EXISTS secrets (name TEXT PRIMARY KEY, value BLOB NOT NULL);
CREATE TABLE IF NOT EXISTS archive (
  seq INTEGER PRIMARY KEY AUTOINCREMENT,
  household TEXT NOT NULL,
  kid BLOB NOT NULL,
  epoch INTEGER NOT NULL,
  digest BLOB NOT NULL UNIQUE,
  payload BLOB NOT NULL,
  received_at INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS archive_household ON archive (household, kid, seq);
`;

/** An account as stored (public key, wrapped private key, login hash). */
export interface Account {
  household: string;
  spki: Buffer;
  kid: Buffer;
  /** JSON of the browser's {@link import('./web/kdf.js').KdfParams}. */
  kdf: string;
  keyIv: Buffer;
  keyCt: Buffer;
  authHash: string;
  createdAt: number;
  updatedAt: number;
  keyPublished: boolean;
  /** The household-key message the browser made (protocol/household-key.ts), published as it is. */
  binding: Buffer | null;
}

/** What a throttled attempt is: an activation code or a login authenticator. */
export type AttemptKind = 'activation' | 'login';

/** Failure counts in a window, with the time (ms) of the latest failure (0 if none). */
export interface FailureCounts {
  /** This source on this household. */
  pair: { count: number; last: number };
  /** This source on any household. */
  source: { count: number; last: number };
  /** Any source on this household. */
  account: { count: number; last: number };
}

/** Session lifetimes, milliseconds. */
export interface SessionPolicy {
  /** A session ends this long after its last request. */
  idleMs: number;
  /** ... and at the latest this long after login. */
  maxMs: number;
}

/** What a session cookie is worth. */
export type SessionState = { state: 'ok'; household: string; expiresAt: number } | { state: 'expired' | 'ended' | 'unknown' };

const tokenHash = (token: string) => createHash('sha256').update(token).digest('hex');

interface AccountRow {
  household: string;
  spki: Buffer;
  kid: Buffer;
  kdf: string;
  key_iv: Buffer;
  key_ct: Buffer;
  auth_hash: string;
  created_at: number;
  updated_at: number;
  key_published: number;
  binding: Buffer | null;
}

const toAccount = (r: AccountRow): Account => ({
  household: r.household,
  spki: r.spki,
  kid: r.kid,
  kdf: r.kdf,
  keyIv: r.key_iv,
  keyCt: r.key_ct,
  authHash: r.auth_hash,
  createdAt: r.created_at,
  updatedAt: r.updated_at,
  keyPublished: r.key_published === 1,
  binding: r.binding,
});

/**
 * The UCS repositories over one SQLite file.
 * @example
 * ```ts
 * const db = new UcsDb('ucs.sqlite', { idleMs: 30 * 60_000, maxMs: 12 * 3600_000 });
 * db.account('hh1');
 * ```
 */
export class UcsDb {
  readonly db: Database.Database;

  constructor(
    path: string,
    readonly sessions: SessionPolicy,
    private readonly now: () => number = Date.now,
  ) {
    privateFile(path); // wrapped keys and login hashes: a secret file (its -wal/-shm inherit the mode)
    this.db = new Database(path);
    this.db.pragma('journal_mode = WAL');
    this.db.pragma('synchronous = FULL');
    this.db.pragma('secure_delete = ON'); // deleted accounts and tokens are overwritten, not left in free pages
    this.db.exec(SCHEMA);
    // Databases made before key bindings carried proofs lack the column (their keys are re-registered).
    const cols = this.db.prepare('PRAGMA table_info(accounts)').all() as { name: string }[];
    if (!cols.some((c) => c.name === 'binding')) this.db.exec('ALTER TABLE accounts ADD COLUMN binding BLOB');
  }

  close(): void {
    this.db.close();
  }

  // --- accounts -------------------------------------------------------------------------------------------

  account(household: string): Account | undefined {
    const r = this.db.prepare('SELECT * FROM accounts WHERE household = ?').get(household) as AccountRow | undefined;
    return r && toAccount(r);
  }

  /** Accounts whose public key the broker has not acknowledged yet. */
  unpublishedKeys(): Account[] {
    return (this.db.prepare('SELECT * FROM accounts WHERE key_published = 0').all() as AccountRow[]).map(toAccount);
  }

  markKeyPublished(household: string, spki: Buffer): void {
    this.db.prepare('UPDATE accounts SET key_published = 1 WHERE household = ? AND spki = ?').run(household, spki);
  }

  /**
   * Registers (or re-registers, with a new activation code) a household: consumes the code and the ticket
   * and writes the account in one transaction. Returns false if the code was used in the meantime.
   */
  register(ticket: string, a: Omit<Account, 'createdAt' | 'updatedAt' | 'keyPublished'>): { ok: true } | { ok: false; why: 'ticket' | 'used' } {
    return this.db.transaction(() => {
      const t = this.db.prepare('DELETE FROM tickets WHERE token = ? AND household = ? RETURNING code_hash, expires_at').get(tokenHash(ticket), a.household) as
        | { code_hash: string; expires_at: number }
        | undefined;
      if (!t || t.expires_at < this.now()) return { ok: false as const, why: 'ticket' as const };
      const used = this.db.prepare('INSERT OR IGNORE INTO used_codes (household, code_hash, used_at) VALUES (?, ?, ?)').run(a.household, t.code_hash, this.now());
      if (used.changes === 0) return { ok: false as const, why: 'used' as const };
      const now = this.now();
      const old = this.account(a.household);
      if (old && !old.kid.equals(a.kid)) this.db.prepare('DELETE FROM archive WHERE household = ?').run(a.household);
      this.db
        .prepare(
          `INSERT INTO accounts (household, spki, kid, kdf, key_iv, key_ct, auth_hash, created_at, updated_at, key_published, binding)
           VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, 0, ?)
           ON CONFLICT (household) DO UPDATE SET spki = excluded.spki, kid = excluded.kid, kdf = excluded.kdf, key_iv = excluded.key_iv,
             key_ct = excluded.key_ct, auth_hash = excluded.auth_hash, updated_at = excluded.updated_at, key_published = 0, binding = excluded.binding`,
        )
        .run(a.household, a.spki, a.kid, a.kdf, a.keyIv, a.keyCt, a.authHash, now, now, a.binding);
      this.db.prepare('UPDATE sessions SET ended = 1 WHERE household = ?').run(a.household);
      return { ok: true as const };
    })();
  }

  /** Replaces the wrapped key and login hash after a password change (the key pair stays). */
  changePassword(household: string, kdf: string, keyIv: Buffer, keyCt: Buffer, authHash: string, keepSession: string): void {
    this.db.transaction(() => {
      this.db.prepare('UPDATE accounts SET kdf = ?, key_iv = ?, key_ct = ?, auth_hash = ?, updated_at = ? WHERE household = ?').run(kdf, keyIv, keyCt, authHash, this.now(), household);
      this.db.prepare('UPDATE sessions SET ended = 1 WHERE household = ? AND token != ?').run(household, tokenHash(keepSession));
    })();
  }

  /** Deletes the account, its sessions and its archive; the activation code stays used. */
  deleteAccount(household: string): void {
    this.db.transaction(() => {
      this.db.prepare('DELETE FROM accounts WHERE household = ?').run(household);
      this.db.prepare('DELETE FROM archive WHERE household = ?').run(household);
      this.db.prepare('DELETE FROM sessions WHERE household = ?').run(household);
    })();
  }

  // --- activation codes and attempts ----------------------------------------------------------------------

  codeUsed(household: string, codeHash: string): boolean {
    return this.db.prepare('SELECT 1 FROM used_codes WHERE household = ? AND code_hash = ?').get(household, codeHash) !== undefined;
  }

  /** A registration ticket: proof that the code was right, valid for `ttlMs`. */
  newTicket(household: string, codeHash: string, ttlMs: number): string {
    const token = b64u(randomBytes(32));
    this.db.prepare('DELETE FROM tickets WHERE expires_at < ?').run(this.now());
    this.db.prepare('INSERT INTO tickets (token, household, code_hash, expires_at) VALUES (?, ?, ?, ?)').run(tokenHash(token), household, codeHash, this.now() + ttlMs);
    return token;
  }

  /**
   * The ticket's code hash if `ticket` is a live ticket of `household` (a cheap look-up, before any costly
   * work; {@link register} checks it again in its transaction).
   */
  ticket(ticket: string, household: string): { codeHash: string } | undefined {
    const r = this.db.prepare('SELECT code_hash FROM tickets WHERE token = ? AND household = ? AND expires_at >= ?').get(tokenHash(ticket), household, this.now()) as { code_hash: string } | undefined;
    return r && { codeHash: r.code_hash };
  }

  /** Records a failed attempt of `source` (a client address) on `household`. */
  recordFailure(kind: AttemptKind, household: string, source: string): void {
    this.db.prepare('INSERT INTO attempt_failures (kind, household, source, at) VALUES (?, ?, ?, ?)').run(kind, household, source, this.now());
  }

  /**
   * Failures since `since` (ms): of `source` on `household`, of `source` on any household, and of any source
   * on `household`, each with the time of its latest. Forgets failures older than `forgetBefore`.
   */
  failures(kind: AttemptKind, household: string, source: string, since: number, accountSince: number, forgetBefore: number): FailureCounts {
    this.db.prepare('DELETE FROM attempt_failures WHERE at < ?').run(forgetBefore);
    const q = (where: string, ...args: (string | number)[]) => {
      const r = this.db.prepare(`SELECT COUNT(*) AS n, MAX(at) AS last FROM attempt_failures WHERE kind = ? AND ${where}`).get(kind, ...args) as { n: number; last: number | null };
      return { count: r.n, last: r.last ?? 0 };
    };
    return {
      pair: q('household = ? AND source = ? AND at >= ?', household, source, since),
      source: q('source = ? AND at >= ?', source, since),
      account: q('household = ? AND at >= ?', household, accountSince),
    };
  }

  /** Forgets the failures of `source` on `household` (it has just proved the secret). */
  clearFailures(kind: AttemptKind, household: string, source: string): void {
    this.db.prepare('DELETE FROM attempt_failures WHERE kind = ? AND household = ? AND source = ?').run(kind, household, source);
  }

  /** A random 32-byte server secret called `name`, made on first use and kept. */
  secret(name: string): Buffer {
    this.db.prepare('INSERT OR IGNORE INTO secrets (name, value) VALUES (?, ?)').run(name, randomBytes(32));
    return (this.db.prepare('SELECT value FROM secrets WHERE name = ?').get(name) as { value: Buffer }).value;
  }

  // --- sessions -------------------------------------------------------------------------------------------

  newSession(household: string): string {
    const token = b64u(randomBytes(32));
    const now = this.now();
    this.db.prepare('DELETE FROM sessions WHERE last_seen < ? OR created_at < ?').run(now - this.sessions.idleMs - 86_400_000, now - this.sessions.maxMs - 86_400_000);
    this.db.prepare('INSERT INTO sessions (token, household, created_at, last_seen) VALUES (?, ?, ?, ?)').run(tokenHash(token), household, now, now);
    return token;
  }

  /** What a session token is worth now; `touch` extends the idle timeout of a live session. */
  session(token: string | undefined, touch: boolean): SessionState {
    if (!token) return { state: 'unknown' };
    const h = tokenHash(token);
    const r = this.db.prepare('SELECT household, created_at, last_seen, ended FROM sessions WHERE token = ?').get(h) as
      | { household: string; created_at: number; last_seen: number; ended: number }
      | undefined;
    if (!r) return { state: 'unknown' };
    if (r.ended) return { state: 'ended' };
    const now = this.now();
    const { idleMs, maxMs } = this.sessions;
    if (now > r.last_seen + idleMs || now > r.created_at + maxMs) return { state: 'expired' };
    let last = r.last_seen;
    if (touch) {
      last = now;
      this.db.prepare('UPDATE sessions SET last_seen = ? WHERE token = ?').run(now, h);
    }
    return { state: 'ok', household: r.household, expiresAt: Math.min(last + idleMs, r.created_at + maxMs) };
  }

  endSession(token: string): void {
    this.db.prepare('UPDATE sessions SET ended = 1 WHERE token = ?').run(tokenHash(token));
  }

  // --- archive --------------------------------------------------------------------------------------------

  /** Stores one sealed stream message; false if the identical message is already there (a redelivery). */
  archive(household: string, kid: Uint8Array, epoch: number, payload: Uint8Array): boolean {
    const digest = createHash('sha256').update(payload).digest();
    return this.db.prepare('INSERT OR IGNORE INTO archive (household, kid, epoch, digest, payload, received_at) VALUES (?, ?, ?, ?, ?, ?)').run(household, Buffer.from(kid), epoch, digest, Buffer.from(payload), this.now()).changes === 1;
  }

  /**
   * Archived messages of a household for key `kid` (and those under `alsoKid`, the meter-sealed ones of the
   * end-to-end mode, ucs/link.ts) after `after`, oldest first.
   */
  archived(household: string, kid: Buffer, after: number, limit: number, alsoKid: Uint8Array = kid): { seq: number; payload: Buffer }[] {
    return this.db.prepare('SELECT seq, payload FROM archive WHERE household = ? AND kid IN (?, ?) AND seq > ? ORDER BY seq LIMIT ?').all(household, kid, Buffer.from(alsoKid), after, limit) as { seq: number; payload: Buffer }[];
  }

  /** Drops archived messages received before `before` (ms). */
  pruneArchive(before: number): number {
    return this.db.prepare('DELETE FROM archive WHERE received_at < ?').run(before).changes;
  }
}
