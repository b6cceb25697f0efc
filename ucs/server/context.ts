/**
 * What every UCS route plugin gets (`app.ucs`): the database, the broker link, the fleet, the session
 * policy, the counters, and the checks shared by several routes (sessions, throttled secrets). Also the
 * `ApiError` every handler throws for a refusal, sent as `{error, message}`.
 * @module
 */
import { createHmac, randomBytes, scrypt } from 'node:crypto';
import type { FastifyReply, FastifyRequest } from 'fastify';
import type { Logger } from 'pino';
import { verifyPassword } from '../../lib/password.js';
import type { Fleet } from '../../lib/keyset.js';
import type { Account, AttemptKind, UcsDb } from '../db.js';
import type { TariffFile } from '../tariff.js';
import type { BrokerLink } from '../link.js';
import { b64u } from '../web/bytes.js';
import { KDF_COST, type KdfParams } from '../web/kdf.js';
import { LOGIN_THROTTLE, sourceOf, verdict, type ThrottlePolicy } from './throttle.js';

/** Requests refused for their input (400, 413, 415) and for their rate (429), per route. */
export interface RequestCounters {
  badInput: Record<string, number>;
  throttled: Record<string, number>;
}

/** The shared state of the UCS server's routes. */
export interface UcsContext {
  keysDir: string;
  db: UcsDb;
  link: BrokerLink;
  /** Households of the fleet. */
  households: ReadonlySet<string>;
  /** The provisioned fleet (meters, their households and neighbourhoods). */
  fleet: Fleet;
  /** The tariff households are billed with (`--tariff`), or null. */
  tariff: TariffFile | null;
  brokerWsUrl: string;
  /** Broker URL shown to households for their own tools (`ucs watch`, the HA bridge). */
  householdMqttUrl: string;
  /** Served over TLS (cookies are `Secure`). */
  secure: boolean;
  idleS: number;
  maxS: number;
  /** Per-address requests per minute on the routes that check a secret. */
  attemptsPerMinute: number;
  counters: RequestCounters;
  logger: Logger;
  now: () => number;
  /** Key of the decoy KDF parameters of households without an account. */
  decoyKey: Buffer;
  /** A login hash no authenticator matches (checked for households without an account: same cost). */
  decoyAuthHash: string;
  /** An activation code hash no code matches (checked for households not in the fleet: same cost). */
  decoyCodeHash: string;
  /** Publishes a household's key to the PES; true once the broker acknowledged it. */
  publishKey(a: Pick<Account, 'household' | 'spki' | 'binding'>): Promise<boolean>;
}

declare module 'fastify' {
  interface FastifyInstance {
    ucs: UcsContext;
  }
}

/**
 * A refusal with a machine code and a message meant for the household (sent as `{error, message}`).
 * @example
 * ```ts
 * throw new ApiError(403, 'wrong-password', 'Wrong password for household hh1.');
 * ```
 */
export class ApiError extends Error {
  constructor(
    readonly statusCode: number,
    readonly code: string,
    message: string,
    /** Seconds to send as `Retry-After`. */
    readonly retryAfterS?: number,
  ) {
    super(message);
  }
}

/** Name of the session cookie. */
export const COOKIE = 'ucs_session';
const AUTH_SCRYPT = { N: 1 << 14, r: 8, p: 1 };

/**
 * Whole minutes, at least one (for messages).
 * @example
 * ```ts
 * minutes(61_000); // 2
 * ```
 */
export const minutes = (ms: number): number => Math.max(1, Math.ceil(ms / 60_000));

/**
 * `n unit` or `n units`.
 * @example
 * ```ts
 * plural(1, 'attempt'); // '1 attempt'
 * ```
 */
export const plural = (n: number, unit: string): string => `${n} ${unit}${n === 1 ? '' : 's'}`;

/**
 * scrypt hash of a login authenticator, in the broker's `N:r:p:salt:hash` format (async, off the event loop).
 * @example
 * ```ts
 * const stored = await hashAuth(auth); // '16384:8:1:<salt hex>:<hash hex>'
 * ```
 */
export function hashAuth(auth: Uint8Array): Promise<string> {
  const salt = randomBytes(16);
  return new Promise((resolve, reject) =>
    scrypt(auth, salt, 32, { ...AUTH_SCRYPT, maxmem: 64 << 20 }, (err, key) =>
      err ? reject(err) : resolve(`${AUTH_SCRYPT.N}:${AUTH_SCRYPT.r}:${AUTH_SCRYPT.p}:${salt.toString('hex')}:${key.toString('hex')}`),
    ),
  );
}

/**
 * KDF parameters for a household without an account: the default cost and a salt derived from a server
 * secret, so that they are the same at every request and look like a real account's.
 * @example
 * ```ts
 * decoyKdf(ctx.decoyKey, 'hh404'); // { alg: 'scrypt', N: 131072, r: 8, p: 1, salt: '…' } (always the same for hh404)
 * ```
 */
export function decoyKdf(key: Buffer, household: string): KdfParams {
  const salt = createHmac('sha256', key).update(`smartermeter/ucs/v1/decoy-kdf|${household}`).digest().subarray(0, 16);
  return { alg: 'scrypt', ...KDF_COST, salt: b64u(salt) };
}

/**
 * The household's session (or a 401): `touch` extends the idle timeout.
 * @example
 * ```ts
 * const { household } = sessionOf(app.ucs, req, true);
 * ```
 */
export function sessionOf(ctx: UcsContext, req: FastifyRequest, touch: boolean): { household: string; expiresAt: number; token: string } {
  const token = req.cookies[COOKIE];
  const s = ctx.db.session(token, touch);
  if (s.state === 'expired') {
    const hours = Math.max(1, Math.round(ctx.maxS / 3600));
    throw new ApiError(401, 'session-expired', `Your session has expired (after ${plural(minutes(ctx.idleS * 1000), 'minute')} without activity, or ${plural(hours, 'hour')} after logging in). Please log in again.`);
  }
  if (s.state !== 'ok') throw new ApiError(401, 'no-session', 'You are not logged in. Please log in.');
  if (!ctx.db.account(s.household)) throw new ApiError(401, 'no-session', 'This account no longer exists. Register again with a new activation code.');
  return { household: s.household, expiresAt: s.expiresAt, token: token! };
}

/**
 * Starts a session for `household` and sets its cookie.
 * @example
 * ```ts
 * startSession(app.ucs, reply, 'hh1');
 * ```
 */
export function startSession(ctx: UcsContext, reply: FastifyReply, household: string): void {
  void reply.setCookie(COOKIE, ctx.db.newSession(household), { httpOnly: true, sameSite: 'strict', secure: ctx.secure, path: '/' });
}

/** How {@link checkSecret} words its refusals. */
export interface SecretCheck {
  kind: AttemptKind;
  policy: ThrottlePolicy;
  /** "wrong activation codes", "wrong passwords". */
  what: string;
  /** The 403 for a wrong secret, given the failures still left before a pause and that pause (minutes). */
  wrong(household: string, left: number, pauseMin: number): ApiError;
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/**
 * Checks a secret under the throttling of ucs/server/throttle.ts: a source that must wait gets 429 without
 * any scrypt work; otherwise (after the household's delay, if many sources failed on it) `verify` runs, a
 * failure is recorded against this source, a success clears this source's failures on this household.
 * @example
 * ```ts
 * await checkSecret(app.ucs, req, LOGIN, 'hh1', () => verifyPassword(auth, account.authHash));
 * ```
 */
export async function checkSecret(ctx: UcsContext, req: FastifyRequest, c: SecretCheck, household: string, verify: () => Promise<boolean>): Promise<void> {
  const source = sourceOf(req.ip);
  const p = c.policy;
  const now = ctx.now();
  const v = verdict(p, ctx.db.failures(c.kind, household, source, now - p.memoryMs, now - p.accountWindowMs, now - p.memoryMs), now);
  if (v.refuse) {
    throw new ApiError(429, 'too-many-attempts', `Too many ${c.what} for household ${household}. Try again in ${minutes(v.waitMs)} minutes.`, Math.ceil(v.waitMs / 1000));
  }
  if (v.delayMs > 0) await sleep(v.delayMs);
  if (!(await verify())) {
    ctx.db.recordFailure(c.kind, household, source);
    ctx.logger.warn({ household, source, kind: c.kind }, 'ucs: wrong secret');
    throw c.wrong(household, v.left - 1, minutes(v.pauseIfWrongMs || p.pauseMs));
  }
  ctx.db.clearFailures(c.kind, household, source);
}

/** Login: 10 wrong passwords per source and household before a pause. */
export const LOGIN: SecretCheck = {
  kind: 'login',
  policy: LOGIN_THROTTLE,
  what: 'wrong passwords',
  wrong: (hh, n, pauseMin) =>
    new ApiError(403, 'wrong-password', `Wrong password for household ${hh}.${n > 3 ? '' : n > 0 ? ` ${plural(n, 'attempt')} left before a ${pauseMin}-minute pause.` : ` Try again in ${pauseMin} minutes.`}`),
};

/**
 * The household's account after a right login authenticator (or a 403/429). A household without an account
 * is answered exactly like a wrong password, after the same scrypt work and counted the same (no oracle of
 * which households have an account).
 * @example
 * ```ts
 * const account = await checkAuth(app.ucs, req, 'hh1', auth);
 * ```
 */
export async function checkAuth(ctx: UcsContext, req: FastifyRequest, household: string, auth: Uint8Array): Promise<Account> {
  const a = ctx.db.account(household);
  await checkSecret(ctx, req, LOGIN, household, async () => (await verifyPassword(auth, a?.authHash ?? ctx.decoyAuthHash)) && a !== undefined);
  return a!;
}
