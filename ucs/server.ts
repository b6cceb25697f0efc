/**
 * The UCS server: registration bound to the meter, login, and the household's ciphertext — never a reading.
 *
 * What it holds and hands out (see ucs/README.md for the whole design):
 * - registration: the activation code of the household's letter (checked against the provisioning hashes,
 *   single use, limited attempts) buys a ticket; with it the browser uploads its public key, its private key
 *   encrypted under a key derived from the password in the browser, and a login authenticator (also derived
 *   in the browser) of which the server keeps a scrypt hash. The server then publishes the public key to
 *   the PES (`topics.householdKey`, retained);
 * - login: the authenticator; the reply is the encrypted private key, which only the browser can open;
 * - `/api/broker`: the household's own broker credentials (read access to its own sealed stream);
 * - `/api/archive`: the household's sealed stream messages kept by the server (ciphertext).
 * Sessions: HttpOnly SameSite=Strict cookie; the database keeps only SHA-256 of the token; idle and
 * absolute timeouts. State-changing requests must be JSON from this origin.
 * @module
 */
import { createPublicKey, randomBytes, scrypt } from 'node:crypto';
import type { AddressInfo } from 'node:net';
import cookie from '@fastify/cookie';
import helmet from '@fastify/helmet';
import rateLimit from '@fastify/rate-limit';
import Fastify, { type FastifyReply, type FastifyRequest } from 'fastify';
import { pino, type Logger } from 'pino';
import { verifyPassword } from '../lib/password.js';
import { keyId } from '../protocol/seal.js';
import { topicId, topics } from '../protocol/topics.js';
import { loadCredentials, loadFleet } from '../lib/keyset.js';
import { loadActivation, normaliseCode } from './activation.js';
import { appBundle, type Asset } from './bundle.js';
import { UcsDb, type Account } from './db.js';
import { startBrokerLink, type BrokerLink } from './link.js';
import { b64u, fromB64u } from './web/bytes.js';
import { checkKdf } from './web/kdf.js';

export interface UcsOptions {
  /** Key set made by `smartermeter provision` (fleet.json, ucs/activation.json, credentials/). */
  keysDir: string;
  /** SQLite file of the server (accounts, sessions, archive). */
  dbPath: string;
  /** Broker URL for the server itself (`mqtt://…`). */
  brokerUrl: string;
  /** Broker MQTT-over-WebSocket URL as the household's browser reaches it (`ws://…` or `wss://…`). */
  brokerWsUrl: string;
  /** HTTP port; 0 picks a free one. Default 0. */
  port?: number;
  /** Interface. Default 127.0.0.1. */
  host?: string;
  logger?: Logger;
  /** TLS key and certificate (PEM); then cookies are `Secure`. */
  https?: { key: string | Buffer; cert: string | Buffer };
  /** Session idle timeout, seconds. Default 1800. */
  sessionIdleS?: number;
  /** Session absolute lifetime, seconds. Default 43200. */
  sessionMaxS?: number;
  /** Keep an archive of sealed streams (needs the broker to let `ucs` subscribe them). Default true. */
  archive?: boolean;
  /** Archived messages are dropped after this many days. Default 400. */
  archiveDays?: number;
  /** Per-address request limits on the activation and login routes, per minute. Default 20. */
  attemptsPerMinute?: number;
  /** MQTT client id of the server's persistent session (unique per UCS on a shared broker). Default `ucs`. */
  clientId?: string;
  /** Clock (tests). Default `Date.now`. */
  now?: () => number;
}

export interface UcsHandle {
  /** `http://host:port`. */
  url: string;
  port: number;
  db: UcsDb;
  link: BrokerLink;
  close(): Promise<void>;
}

/** Wrong codes per household before a pause, and the pause. */
export const ACTIVATION_LIMIT = { failures: 5, windowMs: 15 * 60_000 };
/** Wrong passwords per household before a pause, and the pause. */
export const LOGIN_LIMIT = { failures: 10, windowMs: 15 * 60_000 };
const TICKET_TTL_MS = 15 * 60_000;
const COOKIE = 'ucs_session';
const AUTH_SCRYPT = { N: 1 << 14, r: 8, p: 1 };

/**
 * An error with a machine code and a message meant for the household (sent as `{error, message}`).
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
  ) {
    super(message);
  }
}

const minutes = (ms: number) => Math.max(1, Math.ceil(ms / 60_000));

/** scrypt hash of a login authenticator, in the broker's `N:r:p:salt:hash` format (async, off the event loop). */
function hashAuth(auth: Uint8Array): Promise<string> {
  const salt = randomBytes(16);
  return new Promise((resolve, reject) =>
    scrypt(auth, salt, 32, { ...AUTH_SCRYPT, maxmem: 64 << 20 }, (err, key) =>
      err ? reject(err) : resolve(`${AUTH_SCRYPT.N}:${AUTH_SCRYPT.r}:${AUTH_SCRYPT.p}:${salt.toString('hex')}:${key.toString('hex')}`),
    ),
  );
}

function body(req: FastifyRequest): Record<string, unknown> {
  const b = req.body;
  if (typeof b !== 'object' || b === null || Array.isArray(b)) throw new ApiError(400, 'bad-request', 'The request must be a JSON object.');
  return b as Record<string, unknown>;
}

function householdOf(v: unknown): string {
  try {
    return topicId(v as string, 'household');
  } catch {
    throw new ApiError(400, 'bad-household', 'A household id is letters, digits, ".", "_" or "-" (as printed on your letter).');
  }
}

function bytesOf(v: unknown, what: string, min: number, max: number): Uint8Array<ArrayBuffer> {
  try {
    return fromB64u(v, what, min, max);
  } catch (e) {
    throw new ApiError(400, 'bad-request', (e as Error).message);
  }
}

/** Checks an uploaded public key: RSA, 2048..4096 bits, e = 65537 (the PES needs RSA >= 2048). */
function publicKeyOf(v: unknown): { spki: Buffer; kid: Buffer } {
  const spki = Buffer.from(bytesOf(v, 'spki', 200, 1024));
  let key;
  try {
    key = createPublicKey({ key: spki, format: 'der', type: 'spki' });
  } catch {
    throw new ApiError(400, 'bad-key', 'The public key is not a DER SubjectPublicKeyInfo.');
  }
  const d = key.asymmetricKeyDetails;
  if (key.asymmetricKeyType !== 'rsa' || !d?.modulusLength || d.modulusLength < 2048 || d.modulusLength > 4096 || d.publicExponent !== 65537n) {
    throw new ApiError(400, 'bad-key', 'The household key must be RSA with 2048 to 4096 bits and exponent 65537.');
  }
  return { spki, kid: keyId(key) };
}

function sealedKeyOf(b: Record<string, unknown>): { kdf: string; keyIv: Buffer; keyCt: Buffer } {
  let kdf;
  try {
    kdf = checkKdf(b.kdf);
  } catch (e) {
    throw new ApiError(400, 'bad-request', (e as Error).message);
  }
  const k = b.key as { iv?: unknown; ct?: unknown } | undefined;
  if (typeof k !== 'object' || k === null) throw new ApiError(400, 'bad-request', 'key must be {iv, ct}.');
  return { kdf: JSON.stringify(kdf), keyIv: Buffer.from(bytesOf(k.iv, 'key.iv', 12, 12)), keyCt: Buffer.from(bytesOf(k.ct, 'key.ct', 600, 8192)) };
}

const accountReply = (a: Account) => ({
  household: a.household,
  kdf: JSON.parse(a.kdf) as unknown,
  key: { iv: b64u(a.keyIv), ct: b64u(a.keyCt) },
  spki: b64u(a.spki),
});

/**
 * Starts the UCS server (HTTP + its broker connection).
 * @example
 * ```ts
 * const ucs = await startUcs({ keysDir: 'keys', dbPath: 'ucs.sqlite', brokerUrl: 'mqtt://127.0.0.1:1883', brokerWsUrl: 'ws://127.0.0.1:8080', port: 8443 });
 * console.log(ucs.url);
 * await ucs.close();
 * ```
 */
export async function startUcs(opts: UcsOptions): Promise<UcsHandle> {
  const logger = opts.logger ?? pino({ name: 'ucs' });
  const now = opts.now ?? Date.now;
  const idleS = opts.sessionIdleS ?? 1800;
  const maxS = opts.sessionMaxS ?? 43_200;
  if (!(idleS > 0 && maxS >= idleS)) throw new RangeError('session idle timeout must be positive and at most the session lifetime');
  if (!/^wss?:\/\//.test(opts.brokerWsUrl)) throw new TypeError('brokerWsUrl must be a ws:// or wss:// URL');
  const fleet = loadFleet(opts.keysDir);
  const households = new Set(fleet.households);
  loadActivation(opts.keysDir); // fail at start, not at the first registration
  const ucsCreds = loadCredentials(opts.keysDir, 'ucs');
  const bundle = await appBundle();
  const db = new UcsDb(opts.dbPath, { idleMs: idleS * 1000, maxMs: maxS * 1000 }, now);

  const publishKey = (a: Pick<Account, 'household' | 'spki'>) => link.publishKey(a.household, a.spki);
  const link: BrokerLink = startBrokerLink({
    url: opts.brokerUrl,
    ...ucsCreds,
    ...(opts.clientId !== undefined ? { clientId: opts.clientId } : {}),
    archive: opts.archive ?? true,
    households,
    store: (hh, kid, epoch, payload) => db.archive(hh, kid, epoch, payload),
    onConnect: () => {
      for (const a of db.unpublishedKeys()) void publishKey(a);
    },
    onKeyAcked: (hh, spki) => db.markKeyPublished(hh, Buffer.from(spki)),
    logger,
  });
  const archiveDays = opts.archiveDays ?? 400;
  const prune = setInterval(() => {
    const n = db.pruneArchive(now() - archiveDays * 86_400_000);
    if (n > 0) logger.info({ dropped: n }, 'ucs: archive pruned');
  }, 3600_000);
  prune.unref();

  const app = Fastify({ loggerInstance: logger, bodyLimit: 64 * 1024, trustProxy: false, ...(opts.https ? { https: opts.https } : {}) });
  const secure = Boolean(opts.https);
  // Only JSON bodies: a cross-site HTML form can send text/plain without a CORS preflight.
  app.removeContentTypeParser('text/plain');
  await app.register(cookie);
  await app.register(helmet, {
    contentSecurityPolicy: {
      useDefaults: false,
      directives: {
        defaultSrc: ["'self'"],
        scriptSrc: ["'self'"],
        // mqtt.js runs its keepalive timers in a Worker made from a blob (timers in a hidden tab are throttled).
        workerSrc: ["'self'", 'blob:'],
        styleSrc: ["'self'"],
        imgSrc: ["'self'", 'data:'],
        connectSrc: ["'self'", new URL(opts.brokerWsUrl).origin],
        objectSrc: ["'none'"],
        baseUri: ["'none'"],
        formAction: ["'self'"],
        frameAncestors: ["'none'"],
      },
    },
    hsts: secure,
  });
  await app.register(rateLimit, {
    global: false,
    errorResponseBuilder: (_req, ctx) => ({
      statusCode: 429,
      code: 'too-many-requests',
      message: `Too many attempts from your network address. Try again in ${Math.ceil(ctx.ttl / 1000)} seconds.`,
    }),
  });
  const limited = { config: { rateLimit: { max: opts.attemptsPerMinute ?? 20, timeWindow: 60_000 } } };

  app.setErrorHandler((err: Error & { statusCode?: number; code?: string }, req, reply) => {
    if (err instanceof ApiError) return reply.code(err.statusCode).send({ error: err.code, message: err.message });
    const status = err.statusCode ?? 500;
    if (status === 429) return reply.code(429).send({ error: 'too-many-requests', message: err.message });
    if (status >= 400 && status < 500) return reply.code(status).send({ error: 'bad-request', message: err.message });
    req.log.error({ err: err.message }, 'ucs: request failed');
    return reply.code(500).send({ error: 'internal', message: 'Something went wrong on the server. Please try again.' });
  });

  app.addHook('onRequest', async (req, reply) => {
    void reply.header('cache-control', 'no-store');
    if (req.method !== 'GET' && req.method !== 'HEAD') {
      const origin = req.headers.origin;
      const self = `${secure ? 'https' : 'http'}://${req.headers.host ?? ''}`;
      if (origin !== undefined && origin !== self) throw new ApiError(403, 'cross-origin', 'Requests must come from this site.');
    }
  });

  const serve = (a: Asset) => async (req: FastifyRequest, reply: FastifyReply) => {
    if (req.headers['if-none-match'] === a.etag) return reply.code(304).send();
    return reply.header('etag', a.etag).header('cache-control', 'no-cache').type(a.type).send(a.body);
  };
  for (const [path, a] of Object.entries(bundle)) app.get(path, serve(a));
  app.get('/healthz', async () => ({ ok: true, broker: link.client.connected, archiving: link.archiving, counters: link.counters }));

  // --- sessions -------------------------------------------------------------------------------------------
  const plural = (n: number, unit: string) => `${n} ${unit}${n === 1 ? '' : 's'}`;
  const sessionExpired = `Your session has expired (after ${plural(minutes(idleS * 1000), 'minute')} without activity, or ${plural(Math.max(1, Math.round(maxS / 3600)), 'hour')} after logging in). Please log in again.`;
  const sessionOf = (req: FastifyRequest, touch: boolean): { household: string; expiresAt: number; token: string } => {
    const token = req.cookies[COOKIE];
    const s = db.session(token, touch);
    if (s.state === 'expired') throw new ApiError(401, 'session-expired', sessionExpired);
    if (s.state !== 'ok') throw new ApiError(401, 'no-session', 'You are not logged in. Please log in.');
    if (!db.account(s.household)) throw new ApiError(401, 'no-session', 'This account no longer exists. Register again with a new activation code.');
    return { household: s.household, expiresAt: s.expiresAt, token: token! };
  };
  const startSession = (reply: FastifyReply, household: string) =>
    reply.setCookie(COOKIE, db.newSession(household), { httpOnly: true, sameSite: 'strict', secure, path: '/' });
  const sessionReply = (s: { household: string; expiresAt: number }) => ({ household: s.household, expiresAt: s.expiresAt, idleS });

  app.get('/api/session', async (req) => sessionReply(sessionOf(req, false)));
  app.post('/api/session/touch', async (req) => sessionReply(sessionOf(req, true)));
  app.post('/api/logout', async (req, reply) => {
    const token = req.cookies[COOKIE];
    if (token) db.endSession(token);
    void reply.clearCookie(COOKIE, { path: '/' });
    return { ok: true };
  });

  // --- registration ---------------------------------------------------------------------------------------
  const lockout = (kind: 'activation' | 'login', hh: string, limit: { failures: number; windowMs: number }, what: string) => {
    const f = db.recentFailures(kind, hh, limit.windowMs);
    if (f.count >= limit.failures) {
      const wait = (f.oldest ?? now()) + limit.windowMs - now();
      throw new ApiError(429, 'too-many-attempts', `Too many ${what} for household ${hh}. Try again in ${minutes(wait)} minutes.`);
    }
    return limit.failures - f.count;
  };

  app.post('/api/register/begin', limited, async (req) => {
    const b = body(req);
    const hh = householdOf(b.household);
    const hash = loadActivation(opts.keysDir).codes[hh];
    if (!hash || !households.has(hh)) throw new ApiError(404, 'unknown-household', `Household ${hh} is not known to this service. Check the household id on your activation letter.`);
    const code = normaliseCode(b.code);
    if (!code) throw new ApiError(400, 'bad-code', 'An activation code has 12 letters and digits, like ABCD-EFGH-JKLM.');
    const left = lockout('activation', hh, ACTIVATION_LIMIT, 'wrong activation codes');
    if (!(await verifyPassword(code, hash))) {
      db.recordFailure('activation', hh);
      logger.warn({ household: hh }, 'ucs: wrong activation code');
      const n = left - 1;
      throw new ApiError(403, 'wrong-code', `That activation code is not right for household ${hh}. ${n > 0 ? `${n} attempt${n === 1 ? '' : 's'} left before a ${minutes(ACTIVATION_LIMIT.windowMs)}-minute pause.` : `Try again in ${minutes(ACTIVATION_LIMIT.windowMs)} minutes.`}`);
    }
    if (db.codeUsed(hh, hash)) throw codeUsed(hh);
    db.clearFailures('activation', hh);
    logger.info({ household: hh }, 'ucs: activation code accepted');
    return { ticket: db.newTicket(hh, hash, TICKET_TTL_MS) };
  });
  const codeUsed = (hh: string) =>
    new ApiError(409, 'code-used', `This activation code has already been used: each code registers household ${hh} once. Log in with your password, or ask your energy supplier for a new code if you have lost it.`);

  app.post('/api/register/finish', async (req, reply) => {
    const b = body(req);
    const hh = householdOf(b.household);
    const ticket = typeof b.ticket === 'string' && b.ticket.length <= 64 ? b.ticket : '';
    const { spki, kid } = publicKeyOf(b.spki);
    const sealed = sealedKeyOf(b);
    const authHash = await hashAuth(bytesOf(b.auth, 'auth', 32, 32));
    const r = db.register(ticket, { household: hh, spki, kid, ...sealed, authHash });
    if (!r.ok) {
      if (r.why === 'used') throw codeUsed(hh);
      throw new ApiError(400, 'ticket-expired', 'This registration took too long or was already completed. Please enter your activation code again.');
    }
    logger.info({ household: hh, kid: kid.toString('hex') }, 'ucs: household registered');
    startSession(reply, hh);
    const keyPublished = await publishKey({ household: hh, spki });
    return { household: hh, keyPublished };
  });

  // --- login ----------------------------------------------------------------------------------------------
  app.get('/api/kdf', limited, async (req) => {
    const hh = householdOf((req.query as { household?: unknown }).household);
    const a = db.account(hh);
    if (!a) throw new ApiError(404, 'no-account', `There is no account for household ${hh} yet. Register first with the activation code from your letter.`);
    return { kdf: JSON.parse(a.kdf) as unknown };
  });

  const checkAuth = async (hh: string, auth: unknown): Promise<Account> => {
    const a = db.account(hh);
    if (!a) throw new ApiError(404, 'no-account', `There is no account for household ${hh} yet. Register first with the activation code from your letter.`);
    const left = lockout('login', hh, LOGIN_LIMIT, 'wrong passwords');
    if (!(await verifyPassword(bytesOf(auth, 'auth', 32, 32), a.authHash))) {
      db.recordFailure('login', hh);
      logger.warn({ household: hh }, 'ucs: wrong password');
      const n = left - 1;
      throw new ApiError(403, 'wrong-password', `Wrong password for household ${hh}.${n <= 3 ? ` ${n} attempt${n === 1 ? '' : 's'} left before a ${minutes(LOGIN_LIMIT.windowMs)}-minute pause.` : ''}`);
    }
    db.clearFailures('login', hh);
    return a;
  };

  app.post('/api/login', limited, async (req, reply) => {
    const b = body(req);
    const a = await checkAuth(householdOf(b.household), b.auth);
    startSession(reply, a.household);
    logger.info({ household: a.household }, 'ucs: logged in');
    return accountReply(a);
  });

  // --- the logged-in household ----------------------------------------------------------------------------
  app.get('/api/key', async (req) => accountReply(db.account(sessionOf(req, true).household)!));

  app.get('/api/broker', async (req) => {
    const { household } = sessionOf(req, true);
    let creds;
    try {
      creds = loadCredentials(opts.keysDir, `household-${household}`);
    } catch {
      throw new ApiError(503, 'no-broker-credentials', 'This server has no broker credentials for your household; live readings are unavailable. Please tell your energy supplier.');
    }
    return { wsUrl: opts.brokerWsUrl, username: creds.username, password: creds.password, topic: topics.household(household), archive: link.archiving };
  });

  app.get('/api/archive', async (req) => {
    const { household } = sessionOf(req, true);
    const q = req.query as { after?: string; limit?: string };
    const int = (v: string | undefined, d: number, max: number) => {
      if (v === undefined) return d;
      if (!/^\d{1,15}$/.test(v) || Number(v) > max) throw new ApiError(400, 'bad-request', `query values must be integers up to ${max}`);
      return Number(v);
    };
    const after = int(q.after, 0, Number.MAX_SAFE_INTEGER);
    const limit = Math.max(1, int(q.limit, 500, 2000));
    const a = db.account(household)!;
    const rows = db.archived(household, a.kid, after, limit + 1);
    const items = rows.slice(0, limit).map((r) => [r.seq, b64u(r.payload)] as const);
    return { items, more: rows.length > limit, archiving: link.archiving };
  });

  app.post('/api/password', async (req) => {
    const s = sessionOf(req, true);
    const b = body(req);
    await checkAuth(s.household, b.auth);
    const sealed = sealedKeyOf(b);
    db.changePassword(s.household, sealed.kdf, sealed.keyIv, sealed.keyCt, await hashAuth(bytesOf(b.newAuth, 'newAuth', 32, 32)), s.token);
    logger.info({ household: s.household }, 'ucs: password changed');
    return { ok: true };
  });

  app.post('/api/account/delete', async (req, reply) => {
    const s = sessionOf(req, true);
    await checkAuth(s.household, body(req).auth);
    const withdrawn = await link.withdrawKey(s.household);
    db.deleteAccount(s.household);
    void reply.clearCookie(COOKIE, { path: '/' });
    logger.info({ household: s.household, withdrawn }, 'ucs: account deleted');
    return { ok: true, keyWithdrawn: withdrawn };
  });

  try {
    await app.listen({ port: opts.port ?? 0, host: opts.host ?? '127.0.0.1' });
  } catch (e) {
    await link.close();
    db.close();
    const err = e as NodeJS.ErrnoException;
    if (err.code === 'EADDRINUSE') throw new Error(`port ${opts.port} is in use — choose another with --http or 0`);
    throw e;
  }
  const port = (app.server.address() as AddressInfo).port;
  const host = opts.host ?? '127.0.0.1';
  const url = `${secure ? 'https' : 'http'}://${host.includes(':') ? `[${host}]` : host}:${port}`;
  logger.info({ url, households: households.size }, 'ucs: listening');
  let closing: Promise<void> | undefined;
  return {
    url,
    port,
    db,
    link,
    close() {
      closing ??= (async () => {
        clearInterval(prune);
        await app.close();
        await link.close();
        db.close();
      })();
      return closing;
    },
  };
}
