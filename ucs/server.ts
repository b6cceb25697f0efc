/**
 * The UCS server: registration bound to the meter, login, and the household's ciphertext — never a reading.
 *
 * What it holds and hands out (see ucs/README.md for the whole design):
 * - registration: the activation code of the household's letter (checked against the provisioning hashes,
 *   single use, throttled) buys a ticket; with it the browser uploads its public key, its private key
 *   encrypted under a key derived from the password in the browser, and a login authenticator (also derived
 *   in the browser) of which the server keeps a scrypt hash. The server then publishes the public key to
 *   the PES (`topics.householdKey`, retained);
 * - login: the authenticator; the reply is the encrypted private key, which only the browser can open;
 * - `/api/broker`: the household's own broker credentials (read access to its own sealed stream);
 * - `/api/archive`: the household's sealed stream messages kept by the server (ciphertext).
 * Sessions: HttpOnly SameSite=Strict cookie; the database keeps only SHA-256 of the token; idle and
 * absolute timeouts. State-changing requests must be JSON from this origin.
 *
 * This module builds the shared context (ucs/server/context.ts) and registers the route plugins of
 * ucs/server/; every route declares a JSON schema for its input and its answers (ucs/server/schemas.ts).
 * @module
 */
import { randomBytes } from 'node:crypto';
import type { AddressInfo } from 'node:net';
import cookie from '@fastify/cookie';
import helmet from '@fastify/helmet';
import rateLimit from '@fastify/rate-limit';
import Fastify, { type FastifyError, type FastifySchemaValidationError } from 'fastify';
import { pino, type Logger } from 'pino';
import { hashPassword } from '../broker/users.js';
import { loadCredentials, loadFleet } from '../provision/keys.js';
import { loadActivation } from './activation.js';
import { appBundle } from './bundle.js';
import { UcsDb } from './db.js';
import { startBrokerLink, type BrokerLink } from './link.js';
import { accountRoutes } from './server/account.js';
import { ApiError, hashAuth, type RequestCounters, type UcsContext } from './server/context.js';
import { loginRoutes } from './server/login.js';
import { registrationRoutes } from './server/registration.js';
import { sessionRoutes } from './server/session.js';
import { systemRoutes } from './server/system.js';
import { sourceOf } from './server/throttle.js';

export { ApiError } from './server/context.js';
export { ACTIVATION_THROTTLE, LOGIN_THROTTLE } from './server/throttle.js';

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
  /** Per-address request limits on the registration and login routes, per minute. Default 20. */
  attemptsPerMinute?: number;
  /**
   * Take the client address from `X-Forwarded-For` set by these proxies (fastify `trustProxy`): needed
   * behind a TLS-terminating proxy, or every household shares the proxy's address for the throttling.
   * Default false.
   */
  trustProxy?: boolean | string | string[];
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

/** Refusals of a bad field that the household can act on, with their own code and message. */
const FIELD_ERRORS: Record<string, [code: string, message: string]> = {
  '/household': ['bad-household', 'A household id is letters, digits, ".", "_" or "-" (as printed on your letter).'],
  '/code': ['bad-code', 'An activation code has 12 letters and digits, like ABCD-EFGH-JKLM.'],
};

/** A schema violation as a 400 naming the field (`body/key/iv must NOT have fewer than 16 characters`). */
function schemaError(errors: FastifySchemaValidationError[], dataVar: string): Error {
  const e = errors[0]!;
  const known = FIELD_ERRORS[e.instancePath];
  if (known) return new ApiError(400, known[0], known[1]);
  const params = e.params as { additionalProperty?: string };
  const what = params.additionalProperty ? `has an unknown field "${params.additionalProperty}"` : e.message;
  return new ApiError(400, 'bad-request', `${dataVar}${e.instancePath} ${what}`);
}

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

  const link: BrokerLink = startBrokerLink({
    url: opts.brokerUrl,
    ...ucsCreds,
    ...(opts.clientId !== undefined ? { clientId: opts.clientId } : {}),
    archive: opts.archive ?? true,
    households,
    store: (hh, kid, epoch, payload) => db.archive(hh, kid, epoch, payload),
    onConnect: () => {
      for (const a of db.unpublishedKeys()) void ctx.publishKey(a);
    },
    onKeyAcked: (hh, spki) => db.markKeyPublished(hh, Buffer.from(spki)),
    logger,
  });
  const counters: RequestCounters = { badInput: {}, throttled: {} };
  const ctx: UcsContext = {
    keysDir: opts.keysDir,
    db,
    link,
    households,
    brokerWsUrl: opts.brokerWsUrl,
    secure: Boolean(opts.https),
    idleS,
    maxS,
    attemptsPerMinute: opts.attemptsPerMinute ?? 20,
    counters,
    logger,
    now,
    decoyKey: db.secret('decoy-kdf'),
    decoyAuthHash: await hashAuth(randomBytes(32)),
    decoyCodeHash: hashPassword(randomBytes(16).toString('hex')), // provisioning's parameters (broker/users.ts)
    publishKey: (a) => link.publishKey(a.household, a.spki),
  };
  const archiveDays = opts.archiveDays ?? 400;
  const prune = setInterval(() => {
    const n = db.pruneArchive(now() - archiveDays * 86_400_000);
    if (n > 0) logger.info({ dropped: n }, 'ucs: archive pruned');
  }, 3600_000);
  prune.unref();

  const app = Fastify({
    loggerInstance: logger,
    bodyLimit: 64 * 1024,
    trustProxy: opts.trustProxy ?? false,
    ajv: { customOptions: { removeAdditional: false, coerceTypes: 'array', useDefaults: true, allErrors: false } },
    schemaErrorFormatter: schemaError,
    ...(opts.https ? { https: opts.https } : {}),
  });
  app.decorate('ucs', ctx);
  // Every route declares its input and its answers (checked as routes are added).
  app.addHook('onRoute', (route) => {
    if (route.method !== 'HEAD' && !route.schema?.response) throw new Error(`route ${String(route.method)} ${route.url} declares no response schema`);
  });
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
    hsts: ctx.secure,
  });
  await app.register(rateLimit, {
    global: false,
    keyGenerator: (req) => sourceOf(req.ip),
    errorResponseBuilder: (_req, c) => ({
      statusCode: 429,
      code: 'too-many-requests',
      message: `Too many attempts from your network address. Try again in ${Math.ceil(c.ttl / 1000)} seconds.`,
    }),
  });

  app.setErrorHandler((err: FastifyError | ApiError, req, reply) => {
    if (err instanceof ApiError) {
      if (err.retryAfterS !== undefined) void reply.header('retry-after', String(err.retryAfterS));
      return reply.code(err.statusCode).send({ error: err.code, message: err.message });
    }
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
      const self = `${ctx.secure ? 'https' : 'http'}://${req.headers.host ?? ''}`;
      if (origin !== undefined && origin !== self) throw new ApiError(403, 'cross-origin', 'Requests must come from this site.');
    }
  });
  app.addHook('onResponse', async (req, reply) => {
    const which = reply.statusCode === 429 ? counters.throttled : [400, 413, 415].includes(reply.statusCode) ? counters.badInput : null;
    if (which) {
      const route = req.routeOptions.url ?? 'unmatched';
      which[route] = (which[route] ?? 0) + 1;
    }
  });

  await app.register(systemRoutes, { bundle });
  await app.register(sessionRoutes);
  await app.register(registrationRoutes);
  await app.register(loginRoutes);
  await app.register(accountRoutes);

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
  const url = `${ctx.secure ? 'https' : 'http'}://${host.includes(':') ? `[${host}]` : host}:${port}`;
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
