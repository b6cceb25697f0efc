/**
 * What every route plugin gets: the store, the web repositories, the fleet, and the request's auth — plus
 * the Fastify type augmentations and the `HttpError` every handler throws for a 4xx.
 * @module
 */
import type { FastifyReply, FastifyRequest } from 'fastify';
import type { Fleet } from '../../lib/keyset.js';
import type { Store } from '../store/types.js';
import type { WebDb } from './db.js';
import type { Metrics } from './metrics.js';
import type { Permission } from './roles.js';
import type { Session } from './users.js';

/** Who may call a route: anybody, any signed-in user, or holders of a permission. */
export type Access = 'public' | 'user' | Permission;

/** Shared services of the app. */
export interface AppServices {
  store: Store;
  web: WebDb;
  fleet: Fleet | null;
  metrics: Metrics;
  assets: { js: string; css: string };
  /** Password attempts allowed per client IP, and failures per account, per window (shared by every login route). */
  loginRateLimit: { max: number; timeWindowMs: number };
  /** Bearer token for /metrics (otherwise loopback clients only). */
  metricsToken: string | null;
  /** Directory `smartermeter privacy-report --out` wrote (report.html, summary.json), shown on the Privacy page; null = none. */
  privacyReport: string | null;
  /** `auto`: Secure cookies except on plain HTTP between loopback addresses; `always`: Secure everywhere. */
  secureCookies: 'auto' | 'always';
  /** Clock (tests). */
  now: () => number;
}

declare module 'fastify' {
  interface FastifyContextConfig {
    /** Required on every route (checked when routes are added: deny by default). */
    access?: Access;
    /** `false` exempts a state-changing route from the CSRF check (only the JSON API login). */
    csrf?: boolean;
  }
  interface FastifyRequest {
    /** The live session, or null for an anonymous request. */
    session: Session | null;
  }
  interface FastifyInstance {
    mdms: AppServices;
  }
}

/**
 * A client error with a clear message (rendered as JSON for the API, as a page otherwise).
 * @example
 * ```ts
 * throw new HttpError(404, `unknown account ${number}`);
 * ```
 */
export class HttpError extends Error {
  override name = 'HttpError';
  constructor(
    readonly statusCode: number,
    message: string,
  ) {
    super(message);
  }
}

/**
 * True for requests that want JSON answers (the API and the machine endpoints).
 * @example
 * ```ts
 * if (wantsJson(req)) reply.send({ message }); else reply.type('text/html').send(page);
 * ```
 */
export function wantsJson(req: FastifyRequest): boolean {
  const path = req.url.split('?')[0]!;
  return path.startsWith('/api/') || path === '/openapi.json' || path === '/healthz' || path === '/metrics';
}

/**
 * The client's address for the audit log.
 * @example
 * ```ts
 * await audit.record({ ..., ip: clientIp(req) });
 * ```
 */
export function clientIp(req: FastifyRequest): string {
  return req.ip ?? 'unknown';
}

/**
 * Shorthand for handlers: the signed-in user (routes with access other than 'public' always have one).
 * @example
 * ```ts
 * const { username, roles } = userOf(req);
 * ```
 */
export function userOf(req: FastifyRequest): NonNullable<FastifyRequest['session']>['user'] {
  if (!req.session) throw new HttpError(401, 'sign in first');
  return req.session.user;
}

/**
 * Sends HTML.
 * @example
 * ```ts
 * return sendHtml(reply, html`<h1>Hello</h1>`);
 * ```
 */
export function sendHtml(reply: FastifyReply, body: { value: string } | string, status = 200): FastifyReply {
  return reply
    .code(status)
    .type('text/html; charset=utf-8')
    .send(typeof body === 'string' ? body : body.value);
}
