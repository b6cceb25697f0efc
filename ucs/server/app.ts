/**
 * The UCS fastify app (not listening): security headers, cookies, per-address rate limits, JSON-only
 * bodies from this origin, one error handler answering `{error, message}`, counters of refused requests, and
 * the route plugins — each route declaring a JSON schema for its input and its answers (checked as routes
 * are added).
 * @module
 */
import cookie from '@fastify/cookie';
import helmet from '@fastify/helmet';
import rateLimit from '@fastify/rate-limit';
import Fastify, { type FastifyError, type FastifyInstance, type FastifySchemaValidationError } from 'fastify';
import type { Logger } from 'pino';
import type { AppBundle } from '../bundle.js';
import { accountRoutes } from './account.js';
import { ApiError, type UcsContext } from './context.js';
import { householdRoutes } from './household.js';
import { loginRoutes } from './login.js';
import { registrationRoutes } from './registration.js';
import { sessionRoutes } from './session.js';
import { systemRoutes } from './system.js';
import { sourceOf } from './throttle.js';

/** Refusals of a bad field that the household can act on, with their own code and message. */
const FIELD_ERRORS: Record<string, [code: string, message: string]> = {
  '/household': ['bad-household', 'A household id is letters, digits, ".", "_" or "-" (as printed on your letter).'],
  '/verifier': ['bad-code', 'The activation code did not reach the server in the expected form; reload the page and type it again.'],
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

/** Options of {@link buildUcsApp}. */
export interface UcsAppOptions {
  bundle: AppBundle;
  logger: Logger;
  https?: { key: string | Buffer; cert: string | Buffer };
  /** fastify `trustProxy`: whose `X-Forwarded-For` to believe. Default false. */
  trustProxy?: boolean | string | string[];
}

/**
 * Builds the app over a context.
 * @example
 * ```ts
 * const app = await buildUcsApp(ctx, { bundle: await appBundle(), logger });
 * await app.listen({ port: 8443 });
 * ```
 */
export async function buildUcsApp(ctx: UcsContext, opts: UcsAppOptions): Promise<FastifyInstance> {
  const app = Fastify({
    loggerInstance: opts.logger,
    bodyLimit: 64 * 1024,
    trustProxy: opts.trustProxy ?? false,
    ajv: { customOptions: { removeAdditional: false, coerceTypes: 'array', useDefaults: true, allErrors: false } },
    schemaErrorFormatter: schemaError,
    ...(opts.https ? { https: opts.https } : {}),
  }) as unknown as FastifyInstance;
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
        connectSrc: ["'self'", new URL(ctx.brokerWsUrl).origin],
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
    const which = reply.statusCode === 429 ? ctx.counters.throttled : [400, 413, 415].includes(reply.statusCode) ? ctx.counters.badInput : null;
    if (which) {
      const route = req.routeOptions.url ?? 'unmatched';
      which[route] = (which[route] ?? 0) + 1;
    }
  });

  app.setNotFoundHandler(async (req, reply) => reply.code(404).send({ error: 'not-found', message: `Nothing at ${req.method} ${req.url.split('?')[0]!.slice(0, 120)}.` }));

  await app.register(systemRoutes, { bundle: opts.bundle });
  await app.register(sessionRoutes);
  await app.register(registrationRoutes);
  await app.register(loginRoutes);
  await app.register(accountRoutes);
  await app.register(householdRoutes);
  return app;
}
