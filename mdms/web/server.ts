/**
 * The MDMS web application: Fastify with helmet (CSP: only our own script and stylesheet), cookies, CSRF
 * tokens bound to the session, form bodies, rate-limited logins, OpenAPI, Prometheus metrics; deny-by-default
 * authorisation (every route must declare `config.access` and a schema, checked as routes are added); one
 * error handler that answers 4xx with a clear message — JSON for the API, a page otherwise — and never sends
 * a stack trace.
 * @module
 */
import Fastify, { type FastifyError, type FastifyInstance, type FastifyReply, type FastifyRequest } from 'fastify';
import cookie from '@fastify/cookie';
import csrf from '@fastify/csrf-protection';
import formbody from '@fastify/formbody';
import helmet from '@fastify/helmet';
import rateLimit from '@fastify/rate-limit';
import swagger from '@fastify/swagger';
import { STATUS_CODES } from 'node:http';
import type { AddressInfo } from 'node:net';
import type { Logger } from 'pino';
import type { Fleet } from '../../lib/keyset.js';
import type { Driver } from '../store/driver.js';
import { isPostgresUrl } from '../store/index.js';
import { openPostgres, redactUrl } from '../store/postgres.js';
import { SqlStore } from '../store/sql-store.js';
import { openSqlite } from '../store/sqlite.js';
import type { Store } from '../store/types.js';
import { assets } from './assets.js';
import { BillingError } from '../../lib/billing.js';
import { clientIp, HttpError, wantsJson, type Access, type AppServices } from './context.js';
import { openWebDb, type WebDb } from './db.js';
import { html } from './html.js';
import { createMetrics } from './metrics.js';
import { sendPage } from './render.js';
import { can } from './roles.js';
import { errorSchema, OPERATION_IDS } from './schemas.js';
import { UserError, type SessionPolicy } from './users.js';
import { authRoutes, SESSION_COOKIE } from './routes/auth.js';
import { systemRoutes } from './routes/system.js';
import { neighbourhoodRoutes } from './routes/neighbourhoods.js';
import { billingRoutes } from './routes/billing.js';
import { issuedRoutes } from './routes/issued.js';
import { exportRoutes } from './routes/exports.js';
import { tariffRoutes } from './routes/tariffs.js';
import { adminRoutes } from './routes/admin.js';
import { forecastRoutes } from './routes/forecast.js';
import { qualityRoutes } from './routes/quality.js';
import { privacyRoutes } from './routes/privacy.js';
import { bindPort, closeWithin } from '../../lib/ports.js';

/** Largest request body accepted (forms and JSON are small; a tariff with 64 bands is ~4 KiB). */
export const BODY_LIMIT = 64 * 1024;

/** Options of {@link buildMdmsWeb}. */
export interface MdmsWebAppOptions {
  store: Store;
  /** The web tables' database (the same database as the store). */
  web: WebDb;
  fleet?: Fleet | null;
  logger?: Logger | false;
  /** Password attempts per client IP, and failed ones per account, per window (every login route shares both budgets). Default 10 per minute. */
  loginRateLimit?: { max: number; timeWindowMs: number };
  /** Bearer token that /metrics requires; without it only loopback clients may scrape. */
  metricsToken?: string | null;
  /** The privacy report's directory (`--privacy-report DIR`): the Privacy page serves its report.html and shows summary.json. */
  privacyReport?: string | null;
  /** Trust X-Forwarded-* from a TLS-terminating proxy in front (production). Default false. */
  trustProxy?: boolean | string | string[];
  /** See {@link AppServices.secureCookies}. Default `auto`. */
  secureCookies?: 'auto' | 'always';
  /** Certificate chain and private key (PEM): serve HTTPS (cookies are then Secure). Default plain HTTP. */
  https?: { cert: string | Buffer; key: string | Buffer };
  now?: () => number;
  /** A line on top of every page, e.g. that the data runs in simulated time (the demo's time-lapse). */
  banner?: string | null;
  /** Called for every route added (introspection: tests check that each one is covered). */
  onRoute?: (route: { method: string; url: string; access: Access }) => void;
}

function statusText(code: number): string {
  return STATUS_CODES[code] ?? 'Error';
}

/** What a path parameter names, for "unknown account NOPE". */
const PARAM_NOUNS: Record<string, string> = { account: 'account', nb: 'neighbourhood', number: 'bill', id: 'id', start: 'interval' };

/**
 * Turns any error into (status, message) fit for a client: known 4xx keep their message, the rest are 500.
 * A path parameter that cannot name anything (`/accounts/NOPE`) is a 404 "unknown account NOPE", like a
 * well-formed one that names nothing, not a 400 quoting the schema's regular expression.
 */
function classify(err: FastifyError | Error, params?: unknown): { status: number; message: string } {
  const e = err as FastifyError & { validationContext?: string };
  if (e instanceof HttpError) return { status: e.statusCode, message: e.message };
  if (e instanceof BillingError) return { status: 422, message: e.message };
  if (e instanceof UserError) return { status: 400, message: e.message };
  if (e.validation && e.validationContext === 'params') {
    const name = e.validation[0]?.instancePath.replace(/^\//, '') ?? '';
    const value = (params as Record<string, unknown> | undefined)?.[name];
    return { status: 404, message: `unknown ${PARAM_NOUNS[name] ?? name} ${String(value ?? '').slice(0, 80)}` };
  }
  if (e.validation) return { status: 400, message: `invalid request: ${e.message}` };
  switch (e.code) {
    case 'FST_ERR_CTP_BODY_TOO_LARGE':
      return { status: 413, message: `request body too large (limit ${BODY_LIMIT} bytes)` };
    case 'FST_ERR_CTP_INVALID_MEDIA_TYPE':
      return { status: 415, message: 'unsupported content type: the API takes application/json, forms application/x-www-form-urlencoded' };
    case 'FST_ERR_CTP_INVALID_JSON_BODY':
    case 'FST_ERR_CTP_EMPTY_JSON_BODY':
      return { status: 400, message: 'the request body is not valid JSON' };
    case 'FST_CSRF_INVALID_TOKEN':
    case 'FST_CSRF_MISSING_SECRET':
      return { status: 403, message: 'the form was out of date or did not come from this site (CSRF check failed): reload the page and try again' };
  }
  const status = typeof e.statusCode === 'number' ? e.statusCode : 500;
  if (status >= 400 && status < 500) return { status, message: e.message || statusText(status) };
  return { status: status >= 500 && status < 600 ? status : 500, message: 'internal error: the problem has been logged' };
}

/**
 * Sends an error as JSON or as a page.
 * @example
 * ```ts
 * return sendError(req, reply, 404, 'unknown account');
 * ```
 */
export async function sendError(req: FastifyRequest, reply: FastifyReply, status: number, message: string): Promise<FastifyReply> {
  if (status === 405) reply.header('allow', 'GET, HEAD, POST');
  if (wantsJson(req) || reply.sent) {
    return reply.code(status).type('application/json; charset=utf-8').send({ statusCode: status, error: statusText(status), message });
  }
  try {
    return await sendPage(req, reply, { title: statusText(status), status }, () =>
      html`<div class="card error-page"><div class="code">${status}</div><h1>${statusText(status)}</h1><p data-testid="error-message">${message}</p><p><a href="/">Back to the overview</a></p></div>`,
    );
  } catch {
    return reply.code(status).type('text/plain; charset=utf-8').send(`${status} ${statusText(status)}: ${message}`);
  }
}

const METHODS_WITH_BODY = new Set(['POST', 'PUT', 'PATCH', 'DELETE']);

/**
 * Builds the app (not listening). Use {@link startMdmsWeb} to run it.
 * @example
 * ```ts
 * const app = await buildMdmsWeb({ store, web: await openWebDb(driver) });
 * const res = await app.inject({ url: '/healthz' });
 * ```
 */
export async function buildMdmsWeb(opts: MdmsWebAppOptions): Promise<FastifyInstance> {
  const [js, css] = await assets();
  const app = Fastify({
    ...(opts.logger ? { loggerInstance: opts.logger } : { logger: false }),
    bodyLimit: BODY_LIMIT,
    trustProxy: opts.trustProxy ?? false,
    ...(opts.https ? { https: { cert: opts.https.cert, key: opts.https.key } } : {}),
    routerOptions: { maxParamLength: 200 },
    return503OnClosing: true,
    ajv: { customOptions: { removeAdditional: false, coerceTypes: 'array', useDefaults: true, allErrors: false } },
  }) as unknown as FastifyInstance;
  const services: AppServices = {
    store: opts.store,
    web: opts.web,
    fleet: opts.fleet ?? null,
    metrics: createMetrics(),
    assets: { js: js!.path, css: css!.path },
    loginRateLimit: opts.loginRateLimit ?? { max: 10, timeWindowMs: 60_000 },
    metricsToken: opts.metricsToken ?? null,
    privacyReport: opts.privacyReport ?? null,
    secureCookies: opts.secureCookies ?? 'auto',
    now: opts.now ?? Date.now,
    banner: opts.banner ?? null,
  };
  app.decorate('mdms', services);
  app.decorateRequest('session', null);
  app.addSchema(errorSchema);

  // Deny by default: a route without an access rule or without a schema is a programming error.
  app.addHook('onRoute', (route) => {
    if (route.method === 'HEAD') return;
    const access = route.config?.access;
    if (!access) throw new Error(`route ${String(route.method)} ${route.url} declares no config.access`);
    if (!route.schema) throw new Error(`route ${String(route.method)} ${route.url} declares no schema`);
    // Every operation of the OpenAPI document has an operationId (the method name a generated client gets).
    if (!(route.schema as { hide?: boolean }).hide && (route.schema as { tags?: unknown }).tags) {
      const id = OPERATION_IDS[`${String(route.method)} ${route.url}`];
      if (!id) throw new Error(`route ${String(route.method)} ${route.url} has no operationId in OPERATION_IDS (mdms/web/schemas.ts)`);
      (route.schema as { operationId?: string }).operationId ??= id;
    }
    opts.onRoute?.({ method: String(route.method), url: route.url, access });
  });

  await app.register(helmet, {
    contentSecurityPolicy: {
      useDefaults: false,
      directives: {
        defaultSrc: ["'self'"],
        scriptSrc: ["'self'"],
        styleSrc: ["'self'"],
        imgSrc: ["'self'", 'data:'],
        connectSrc: ["'self'"],
        fontSrc: ["'self'"],
        objectSrc: ["'none'"],
        baseUri: ["'none'"],
        formAction: ["'self'"],
        frameAncestors: ["'none'"],
      },
    },
    crossOriginEmbedderPolicy: false,
  });
  await app.register(cookie);
  const hmacKey = await opts.web.settings.secret('csrf');
  await app.register(csrf, {
    sessionPlugin: '@fastify/cookie',
    cookieKey: 'mdms_csrf',
    cookieOpts: { path: '/', sameSite: 'strict', httpOnly: true },
    getUserInfo: (req: FastifyRequest) => req.session?.tokenHash ?? 'anonymous',
    csrfOpts: { hmacKey },
  });
  await app.register(formbody, { bodyLimit: BODY_LIMIT });
  await app.register(rateLimit, { global: false });
  await app.register(swagger, {
    openapi: {
      openapi: '3.1.0',
      info: {
        title: 'Smarter Metering MDMS API',
        version: '1',
        description:
          'Neighbourhood demand, billing accounts, bills with time-of-use tariffs, exports and the audit log. Sign in with POST /api/v1/session; ' +
          'the session cookie then authenticates every call, and POST/PUT/PATCH/DELETE calls send the returned csrfToken in the x-csrf-token header. ' +
          'Times are ISO 8601; energy is integer Wh; money is integer minor units.',
      },
      components: {
        securitySchemes: {
          session: { type: 'apiKey', in: 'cookie', name: SESSION_COOKIE },
          csrf: { type: 'apiKey', in: 'header', name: 'x-csrf-token' },
        },
      },
      security: [{ session: [] }],
      // Relative: the document is served by the API itself, so a client generated from it calls this server.
      servers: [{ url: '/', description: 'the server that serves this document' }],
    },
    hideUntagged: true,
  });

  // ASVS 8.2.1: no page or API answer may stay in a browser or proxy cache (a shared computer's back button,
  // a proxy): every response is no-store unless its route says otherwise (only the content-hashed assets do).
  app.addHook('onRequest', async (_req, reply) => {
    reply.header('cache-control', 'no-store');
  });

  // Who is asking: the session cookie, looked up once per request (not for assets and probes).
  app.addHook('onRequest', async (req) => {
    const path = req.url.split('?')[0]!;
    if (path.startsWith('/assets/') || path === '/healthz' || path === '/metrics') return;
    const token = req.cookies[SESSION_COOKIE];
    if (token) req.session = await services.web.users.session(token);
  });

  // Authorisation and content types, before any body is read.
  app.addHook('onRequest', async (req, reply) => {
    const access: Access = req.routeOptions.config?.access ?? 'public';
    if (access !== 'public') {
      if (!req.session) {
        if (!wantsJson(req) && req.method === 'GET') {
          const next = req.url.startsWith('/') && !req.url.startsWith('//') ? req.url : '/';
          return reply.redirect(`/login?next=${encodeURIComponent(next)}`, 303);
        }
        throw new HttpError(401, 'sign in first');
      }
      if (access !== 'user' && !can(req.session.user.roles, access)) {
        const u = req.session.user;
        await services.web.audit.record({ userId: u.id, username: u.username, action: 'access.denied', target: `${req.method} ${req.routeOptions.url ?? req.url}`.slice(0, 200), outcome: 'denied', ip: clientIp(req), detail: { permission: access } });
        throw new HttpError(403, `your role${u.roles.length > 1 ? 's' : ''} (${u.roles.join(', ')}) may not do this: it needs ${access}`);
      }
    }
    const length = Number(req.headers['content-length'] ?? 0);
    if (METHODS_WITH_BODY.has(req.method) && (length > 0 || req.headers['transfer-encoding'])) {
      const type = String(req.headers['content-type'] ?? '').split(';')[0]!.trim().toLowerCase();
      const want = wantsJson(req) ? 'application/json' : 'application/x-www-form-urlencoded';
      if (type !== want) throw new HttpError(415, `unsupported content type "${type.slice(0, 60) || 'none'}": send ${want}`);
    }
  });

  // CSRF: every state-changing request carries a token bound to its session (API login is exempt: it is
  // JSON-only, which a cross-site form cannot send, and there is no session yet).
  app.addHook('preValidation', (req, reply, done) => {
    if (!METHODS_WITH_BODY.has(req.method) || req.routeOptions.config?.csrf === false || !req.routeOptions.url) return done();
    app.csrfProtection(req, reply, done);
  });

  app.addHook('onResponse', async (req, reply) => {
    services.metrics.requests.observe({ method: req.method, route: req.routeOptions.url ?? 'unmatched', status: String(reply.statusCode) }, reply.elapsedTime / 1000);
  });

  app.setErrorHandler(async (err, req, reply) => {
    const { status, message } = classify(err as FastifyError, req.params);
    if (status >= 500) req.log.error({ err }, 'request failed');
    else req.log.info({ status, reason: message }, 'request refused');
    return sendError(req, reply, status, message);
  });
  app.setNotFoundHandler(
    { preHandler: async () => undefined },
    async (req, reply) => sendError(req, reply, 404, `nothing at ${req.method} ${req.url.split('?')[0]!.slice(0, 120)}`),
  );

  await app.register(systemRoutes, { assets: [js!, css!] });
  await app.register(authRoutes);
  await app.register(neighbourhoodRoutes);
  await app.register(forecastRoutes);
  await app.register(qualityRoutes);
  await app.register(billingRoutes);
  await app.register(issuedRoutes);
  await app.register(exportRoutes);
  await app.register(tariffRoutes);
  await app.register(adminRoutes);
  await app.register(privacyRoutes);
  return app;
}

/** Options of {@link startMdmsWeb}. */
export interface StartMdmsWebOptions extends Omit<MdmsWebAppOptions, 'store' | 'web'> {
  /** An open store; give `driver` too (the same database) for the web tables. */
  store?: Store;
  driver?: Driver;
  /** Or a database to open both from (SQLite path or postgres:// URL); they are closed with the server. */
  db?: string;
  dbSchema?: string;
  /** Port, 0 = any free one. Default 0. */
  port?: number;
  /** The flag that sets `port`, named when the port is taken. Default `--http`. */
  portFlag?: string;
  /** Default 127.0.0.1. */
  host?: string;
  sessions?: SessionPolicy;
}

/** A running web app. */
export interface MdmsWeb {
  url: string;
  app: FastifyInstance;
  web: WebDb;
  close(): Promise<void>;
}

/**
 * Opens what is needed and listens.
 * @example
 * ```ts
 * const web = await startMdmsWeb({ db: 'mdms.sqlite', fleet: loadFleet('keys'), port: 8080 });
 * console.log(web.url);
 * await web.close();
 * ```
 */
export async function startMdmsWeb(opts: StartMdmsWebOptions): Promise<MdmsWeb> {
  const owned: { close(): Promise<void> }[] = [];
  let store = opts.store;
  let driver = opts.driver;
  try {
    if (!store || !driver) {
      if (!opts.db || store || driver) throw new TypeError('startMdmsWeb needs { store, driver } (the same database) or { db }');
      // One connection (pool) for the store's reads and the web tables: the store is built over our driver.
      const db = opts.db;
      const own = isPostgresUrl(db) ? openPostgres(db, opts.dbSchema ? { schema: opts.dbSchema } : {}) : openSqlite(db);
      owned.push(own);
      driver = own;
      try {
        store = await new SqlStore(own).init();
      } catch (e) {
        throw new Error(`cannot open the MDMS database ${isPostgresUrl(db) ? redactUrl(db) : db}: ${(e as Error).message}`);
      }
    }
    const web = await openWebDb(driver, { ...(opts.now ? { now: opts.now } : {}), ...(opts.sessions ? { sessions: opts.sessions } : {}) });
    const app = await buildMdmsWeb({ ...opts, store, web });
    const at = { port: opts.port ?? 0, host: opts.host ?? '127.0.0.1' };
    await bindPort({ ...at, what: 'the MDMS web app', flag: opts.portFlag ?? '--http' }, () => app.listen(at)).catch(async (e: unknown) => {
      await app.close();
      throw e;
    });
    const addr = app.server.address() as AddressInfo;
    const host = addr.family === 'IPv6' ? `[${addr.address}]` : addr.address;
    const purge = setInterval(() => void web.users.purgeSessions().catch(() => undefined), 10 * 60_000);
    purge.unref();
    let closing: Promise<void> | undefined;
    return {
      url: `${opts.https ? 'https' : 'http'}://${host}:${addr.port}`,
      app,
      web,
      close: () =>
        (closing ??= (async () => {
          clearInterval(purge);
          await closeWithin(app);
          for (const o of owned.reverse()) await o.close();
        })()),
    };
  } catch (e) {
    for (const o of owned.reverse()) await o.close().catch(() => undefined);
    throw e;
  }
}
