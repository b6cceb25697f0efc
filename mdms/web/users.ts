/**
 * Users, passwords and server-side sessions.
 *
 * Passwords: scrypt (N = 2^15, r = 8, p = 1, 16-byte salt, 32-byte hash; the `N:r:p:salt:hash` format the
 * broker's users file uses, verified by its constant-time `verifyPassword`), computed with the asynchronous
 * scrypt so that a login does not stall the event loop. Policy (NIST SP 800-63B §5.1.1.2): at least 12
 * characters, at most 256, not the username; no composition rules. Generated passwords carry 100 bits.
 *
 * Sessions: the cookie carries 32 random bytes; the database keeps only their SHA-256, so a database dump
 * cannot be replayed as a cookie. A session ends after `idleMs` without a request or `absoluteMs` after login,
 * on logout, when the user's password changes (all other sessions), or when the user is disabled.
 * @module
 */
import { createHash, randomBytes, randomInt, scrypt } from 'node:crypto';
import { verifyPassword } from '../../lib/password.js';
import type { Driver } from '../store/driver.js';
import { parseRoles, type Role } from './roles.js';
import { int, text } from './rows.js';

/** A user as the app sees it (never the password hash). */
export interface User {
  id: number;
  username: string;
  roles: Role[];
  disabled: boolean;
  createdAtMs: number;
  passwordChangedAtMs: number;
}

export const USERNAME = /^[a-z0-9][a-z0-9_.-]{2,63}$/;
/** {@link USERNAME} in words, for people (the CLI's error, the add-user form). */
export const USERNAME_RULE = 'a username has 3 to 64 characters: letters, digits, _ . - (starting with a letter or digit)';
export const MIN_PASSWORD = 12;
export const MAX_PASSWORD = 256;
const SCRYPT = { N: 1 << 15, r: 8, p: 1 };

/**
 * Hashes a password with scrypt (asynchronously).
 * @example
 * ```ts
 * const stored = await hashPassword('correct horse battery');
 * ```
 */
export function hashPassword(password: string): Promise<string> {
  const salt = randomBytes(16);
  return new Promise((resolve, reject) =>
    scrypt(password, salt, 32, { ...SCRYPT, maxmem: 128 * SCRYPT.N * SCRYPT.r + (4 << 20) }, (err, key) =>
      err ? reject(err) : resolve(`${SCRYPT.N}:${SCRYPT.r}:${SCRYPT.p}:${salt.toString('hex')}:${key.toString('hex')}`),
    ),
  );
}

/**
 * Why a new password is not acceptable, or `null`.
 * @example
 * ```ts
 * passwordProblem('short', 'alice'); // 'a password needs at least 12 characters'
 * ```
 */
export function passwordProblem(password: unknown, username: string): string | null {
  if (typeof password !== 'string') return 'a password is required';
  const chars = [...password].length;
  if (chars < MIN_PASSWORD) return `a password needs at least ${MIN_PASSWORD} characters`;
  if (chars > MAX_PASSWORD) return `a password may have at most ${MAX_PASSWORD} characters`;
  if (password.toLowerCase() === username.toLowerCase()) return 'a password must not be the username';
  return null;
}

const ALPHABET = 'abcdefghijkmnpqrstuvwxyz23456789'; // 32 symbols, no 0/o/1/l

/**
 * A random password of 20 characters (100 bits), in groups of five for reading aloud.
 * @example
 * ```ts
 * generatePassword(); // 'k7dqz-m2vte-...'
 * ```
 */
export function generatePassword(): string {
  const chars = Array.from({ length: 20 }, () => ALPHABET[randomInt(ALPHABET.length)]!);
  return [0, 5, 10, 15].map((i) => chars.slice(i, i + 5).join('')).join('-');
}

/**
 * Thrown for a user operation that cannot be done (duplicate username, bad password): a 4xx.
 * @example
 * ```ts
 * throw new UserError('user "ann" already exists');
 * ```
 */
export class UserError extends Error {
  override name = 'UserError';
}

const userRow = (r: Record<string, unknown>): User => ({
  id: int(r.id, 'user id'),
  username: text(r.username, 'username'),
  roles: parseRoles(text(r.roles, 'roles')),
  disabled: int(r.disabled, 'disabled') === 1,
  createdAtMs: int(r.created_at_ms, 'created_at_ms'),
  passwordChangedAtMs: int(r.password_changed_at_ms, 'password_changed_at_ms'),
});

const USER_COLS = 'id, username, roles, disabled, created_at_ms, password_changed_at_ms';

/** Session lifetimes. */
export interface SessionPolicy {
  /** Ends after this long without a request. Default 30 min. */
  idleMs: number;
  /** Ends this long after login whatever happens. Default 12 h. */
  absoluteMs: number;
}
export const DEFAULT_SESSION_POLICY: SessionPolicy = { idleMs: 30 * 60_000, absoluteMs: 12 * 3_600_000 };

/** A live session with its user. */
export interface Session {
  tokenHash: string;
  user: User;
  createdAtMs: number;
  expiresAtMs: number;
}

const sha256 = (s: string): string => createHash('sha256').update(s).digest('hex');

/**
 * The users and sessions repository.
 * @example
 * ```ts
 * const users = new Users(driver);
 * const alice = await users.create({ username: 'alice', roles: ['analyst'], password: generatePassword() });
 * ```
 */
export class Users {
  private dummyHash: Promise<string> | undefined;

  constructor(
    private readonly db: Driver,
    private readonly now: () => number = Date.now,
    readonly sessions: SessionPolicy = DEFAULT_SESSION_POLICY,
  ) {}

  /** Creates a user; throws {@link UserError} for a taken or malformed username or a weak password. */
  async create(u: { username: string; roles: readonly Role[]; password: string }): Promise<User> {
    const username = normaliseUsername(u.username);
    const roles = parseRoles(u.roles);
    const problem = passwordProblem(u.password, username);
    if (problem) throw new UserError(problem);
    const hash = await hashPassword(u.password);
    const at = this.now();
    return this.db.transaction(async (tx) => {
      await tx.lock('web_user');
      if ((await tx.query('SELECT 1 AS x FROM web_user WHERE username = ?', [username])).length) throw new UserError(`user "${username}" already exists`);
      const [row] = await tx.query(
        `INSERT INTO web_user (username, roles, password_hash, disabled, created_at_ms, password_changed_at_ms) VALUES (?, ?, ?, 0, ?, ?) RETURNING ${USER_COLS}`,
        [username, roles.join(','), hash, at, at],
      );
      return userRow(row!);
    });
  }

  async list(): Promise<User[]> {
    return (await this.db.query(`SELECT ${USER_COLS} FROM web_user ORDER BY username`, [])).map(userRow);
  }

  async get(id: number): Promise<User | null> {
    const [r] = await this.db.query(`SELECT ${USER_COLS} FROM web_user WHERE id = ?`, [id]);
    return r ? userRow(r) : null;
  }

  async byUsername(username: string): Promise<User | null> {
    const [r] = await this.db.query(`SELECT ${USER_COLS} FROM web_user WHERE username = ?`, [username.toLowerCase()]);
    return r ? userRow(r) : null;
  }

  async count(): Promise<number> {
    const [r] = await this.db.query('SELECT count(*) AS n FROM web_user', []);
    return Number(r?.n ?? 0);
  }

  /**
   * Checks a username and password. Unknown users cost a scrypt too (no timing oracle for which usernames
   * exist). Returns the user, or `null` for a wrong password, unknown or disabled user.
   */
  async verify(username: string, password: string): Promise<User | null> {
    const [r] = await this.db.query(`SELECT ${USER_COLS}, password_hash FROM web_user WHERE username = ?`, [String(username).toLowerCase()]);
    if (!r) {
      this.dummyHash ??= hashPassword(generatePassword());
      await verifyPassword(password, await this.dummyHash);
      return null;
    }
    const ok = await verifyPassword(password, text(r.password_hash, 'password hash'));
    const user = userRow(r);
    return ok && !user.disabled ? user : null;
  }

  /** Changes roles and/or the disabled flag; disabling ends the user's sessions. Refuses to leave no enabled admin. */
  async update(id: number, change: { roles?: readonly Role[]; disabled?: boolean }): Promise<User> {
    return this.db.transaction(async (tx) => {
      await tx.lock('web_user');
      const [r] = await tx.query(`SELECT ${USER_COLS} FROM web_user WHERE id = ?`, [id]);
      if (!r) throw new UserError(`no user ${id}`);
      const old = userRow(r);
      const roles = change.roles ? parseRoles(change.roles) : old.roles;
      const disabled = change.disabled ?? old.disabled;
      if (old.roles.includes('admin') && !old.disabled && (!roles.includes('admin') || disabled)) {
        const [n] = await tx.query("SELECT count(*) AS n FROM web_user WHERE disabled = 0 AND id <> ? AND (',' || roles || ',') LIKE '%,admin,%'", [id]);
        if (Number(n?.n ?? 0) === 0) throw new UserError('this is the last enabled administrator; create another one first');
      }
      await tx.run('UPDATE web_user SET roles = ?, disabled = ? WHERE id = ?', [roles.join(','), disabled ? 1 : 0, id]);
      if (disabled) await tx.run('DELETE FROM web_session WHERE user_id = ?', [id]);
      return { ...old, roles, disabled };
    });
  }

  /** Sets a new password (policy-checked) and ends every session of the user except `keepTokenHash`. */
  async setPassword(id: number, password: string, keepTokenHash?: string): Promise<void> {
    const user = await this.get(id);
    if (!user) throw new UserError(`no user ${id}`);
    const problem = passwordProblem(password, user.username);
    if (problem) throw new UserError(problem);
    const hash = await hashPassword(password);
    await this.db.transaction(async (tx) => {
      await tx.run('UPDATE web_user SET password_hash = ?, password_changed_at_ms = ? WHERE id = ?', [hash, this.now(), id]);
      await tx.run('DELETE FROM web_session WHERE user_id = ? AND token_hash <> ?', [id, keepTokenHash ?? '']);
    });
  }

  /** Starts a session; returns the cookie value (only its hash is stored). */
  async startSession(user: User, ip: string, userAgent: string): Promise<{ token: string; tokenHash: string; expiresAtMs: number }> {
    const token = randomBytes(32).toString('base64url');
    const at = this.now();
    const expiresAtMs = at + this.sessions.absoluteMs;
    const tokenHash = sha256(token);
    await this.db.run(
      'INSERT INTO web_session (token_hash, user_id, created_at_ms, last_seen_ms, expires_at_ms, ip, user_agent) VALUES (?, ?, ?, ?, ?, ?, ?)',
      [tokenHash, user.id, at, at, expiresAtMs, ip.slice(0, 64), userAgent.slice(0, 256)],
    );
    return { token, tokenHash, expiresAtMs };
  }

  /** The live session of a cookie value, or `null` (unknown, expired, idle too long, user disabled). Refreshes its idle clock. */
  async session(token: string): Promise<Session | null> {
    if (typeof token !== 'string' || !/^[A-Za-z0-9_-]{43}$/.test(token)) return null;
    const h = sha256(token);
    const [r] = await this.db.query(
      `SELECT s.token_hash, s.created_at_ms AS s_created, s.last_seen_ms, s.expires_at_ms, u.id, u.username, u.roles, u.disabled, u.created_at_ms, u.password_changed_at_ms
       FROM web_session s JOIN web_user u ON u.id = s.user_id WHERE s.token_hash = ?`,
      [h],
    );
    if (!r) return null;
    const at = this.now();
    const lastSeen = int(r.last_seen_ms, 'last_seen_ms');
    const expires = int(r.expires_at_ms, 'expires_at_ms');
    const user = userRow(r);
    if (at >= expires || at - lastSeen >= this.sessions.idleMs || user.disabled) {
      await this.db.run('DELETE FROM web_session WHERE token_hash = ?', [h]);
      return null;
    }
    // One write a minute at most per session, not one per request.
    if (at - lastSeen >= 60_000) await this.db.run('UPDATE web_session SET last_seen_ms = ? WHERE token_hash = ?', [at, h]);
    return { tokenHash: h, user, createdAtMs: int(r.s_created, 'created_at_ms'), expiresAtMs: expires };
  }

  /** Ends one session (logout). */
  async endSession(tokenHash: string): Promise<void> {
    await this.db.run('DELETE FROM web_session WHERE token_hash = ?', [tokenHash]);
  }

  /** Deletes expired and idle sessions; returns how many. */
  async purgeSessions(): Promise<number> {
    const at = this.now();
    return this.db.run('DELETE FROM web_session WHERE expires_at_ms <= ? OR last_seen_ms <= ?', [at, at - this.sessions.idleMs]);
  }
}

/**
 * Lower-cases and checks a username; throws {@link UserError}.
 * @example
 * ```ts
 * normaliseUsername('Alice'); // 'alice'
 * ```
 */
export function normaliseUsername(v: string): string {
  const u = String(v).trim().toLowerCase();
  if (!USERNAME.test(u)) throw new UserError(`${USERNAME_RULE}, got "${String(v).slice(0, 80)}"`);
  return u;
}
