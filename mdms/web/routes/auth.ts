/**
 * Sign-in, sign-out and password change — as pages and as API calls. Password guesses are rate-limited by
 * two budgets that every route checking a password shares (`POST /login`, `POST /api/v1/session` and both
 * password changes): one per client IP (every attempt counts) and one per account (failed attempts count),
 * each `loginRateLimit.max` per fixed window of `loginRateLimit.timeWindowMs` (default 10 a minute). Every
 * attempt is audited, and the session cookie is HttpOnly, SameSite=Strict and Secure (see `secureRequest`).
 * @module
 */
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import { clientIp, HttpError, userOf } from '../context.js';
import { html } from '../html.js';
import { cookieFlags, csrfField, csrfToken, flashOf, sendPage } from '../render.js';
import { errors, sessionSchema } from '../schemas.js';
import { isoZ } from '../time.js';
import { MAX_PASSWORD, UserError, type User } from '../users.js';

/** Name of the session cookie. */
export const SESSION_COOKIE = 'mdms_session';

/**
 * A user as the API shows it.
 * @example
 * ```ts
 * reply.send(userJson(user));
 * ```
 */
export function userJson(u: User): Record<string, unknown> {
  return { id: u.id, username: u.username, roles: u.roles, disabled: u.disabled, createdAt: isoZ(Math.floor(u.createdAtMs / 1000)), passwordChangedAt: isoZ(Math.floor(u.passwordChangedAtMs / 1000)) };
}

/**
 * The account a password attempt is for: the username of a login body (as stored: trimmed, lower case), or
 * the signed-in user for a password change.
 * @example
 * ```ts
 * attemptedAccount(req); // 'billing'
 * ```
 */
export function attemptedAccount(req: FastifyRequest): string {
  const body = req.body as { username?: unknown } | undefined;
  if (typeof body?.username === 'string') return body.username.trim().toLowerCase().slice(0, 64);
  return req.session?.user.username ?? '';
}

/** A local path to go back to after login (never another site). */
function safeNext(v: unknown): string {
  return typeof v === 'string' && /^\/(?![/\\])[\x21-\x7e]*$/.test(v) && !v.startsWith('/login') ? v : '/';
}

async function loginPage(req: FastifyRequest, reply: FastifyReply, opts: { next: string; error?: string; username?: string; status?: number; flash?: string | null }): Promise<FastifyReply> {
  const { utilityName } = await req.server.mdms.web.settings.all();
  return sendPage(
    req,
    reply,
    { title: 'Sign in', status: opts.status ?? 200, flash: opts.error ? { kind: 'error', text: opts.error } : opts.flash ? { kind: 'ok', text: opts.flash } : null },
    (csrf) => html`<div class="card login">
  <div class="brand"><span class="logo" aria-hidden="true">⚡</span><span>${utilityName}<small>Meter data management · sign in with your utility account</small></span></div>
  <form method="post" action="/login" class="stack">
    ${csrfField(csrf)}
    <input type="hidden" name="next" value="${opts.next}">
    <label>Username <input name="username" autocomplete="username" required maxlength="64" value="${opts.username ?? ''}" autofocus></label>
    <label>Password <input name="password" type="password" autocomplete="current-password" required maxlength="${MAX_PASSWORD}"></label>
    <button type="submit">Sign in</button>
  </form>
</div>`,
  );
}

/**
 * Registers the auth routes.
 * @example
 * ```ts
 * await app.register(authRoutes);
 * ```
 */
export async function authRoutes(app: FastifyInstance): Promise<void> {
  const { web, metrics, loginRateLimit } = app.mdms;
  // One limiter (one store) per budget, shared by every route that checks a password: a per-route
  // `config.rateLimit` would give each route a budget of its own.
  const budget = { max: loginRateLimit.max, timeWindow: loginRateLimit.timeWindowMs };
  const bySource = app.createRateLimit({ ...budget, keyGenerator: (req) => `source:${clientIp(req)}` });
  const byAccount = app.createRateLimit({ ...budget, keyGenerator: (req) => `account:${attemptedAccount(req)}` });

  /**
   * Refuses (429) a password check when the client IP has used its budget of attempts or the account its
   * budget of failures in the current window; counts this attempt against the IP.
   */
  async function guard(req: FastifyRequest, reply: FastifyReply): Promise<void> {
    const source = await bySource(req);
    const account = await byAccount(req, { increment: false });
    const over = !source.isAllowed && source.isExceeded ? { r: source, why: 'from this address' } : !account.isAllowed && account.remaining === 0 ? { r: account, why: 'for this account' } : null;
    if (over) {
      metrics.logins.inc({ outcome: 'limited' });
      reply.header('retry-after', String(over.r.ttlInSeconds));
      throw new HttpError(429, `Rate limit exceeded: too many password attempts ${over.why}; try again in ${over.r.ttlInSeconds} s`);
    }
  }

  /** Counts a wrong password against the account's budget. */
  const failed = async (req: FastifyRequest): Promise<void> => void (await byAccount(req));
  const html200 = { 200: { type: 'string' } } as const;

  /** Checks credentials, audits the attempt, and on success starts a session and sets its cookie. */
  async function signIn(req: FastifyRequest, reply: FastifyReply, username: string, password: string) {
    await guard(req, reply);
    const user = await web.users.verify(username, password);
    const ip = clientIp(req);
    if (!user) {
      await failed(req);
      metrics.logins.inc({ outcome: 'failed' });
      await web.audit.record({ userId: null, username: username.slice(0, 64), action: 'login', target: req.routeOptions.url ?? '', outcome: 'failed', ip });
      return null;
    }
    const s = await web.users.startSession(user, ip, String(req.headers['user-agent'] ?? ''));
    reply.setCookie(SESSION_COOKIE, s.token, cookieFlags(req));
    metrics.logins.inc({ outcome: 'ok' });
    await web.audit.record({ userId: user.id, username: user.username, action: 'login', target: req.routeOptions.url ?? '', outcome: 'ok', ip });
    return { user, ...s };
  }

  async function signOut(req: FastifyRequest, reply: FastifyReply): Promise<void> {
    const s = req.session!;
    await web.users.endSession(s.tokenHash);
    await web.audit.record({ userId: s.user.id, username: s.user.username, action: 'logout', target: '', outcome: 'ok', ip: clientIp(req) });
    reply.clearCookie(SESSION_COOKIE, cookieFlags(req));
  }

  async function changePassword(req: FastifyRequest, reply: FastifyReply, current: string, next: string): Promise<void> {
    const u = userOf(req);
    await guard(req, reply);
    const ok = await web.users.verify(u.username, current);
    if (!ok) {
      await failed(req);
      await web.audit.record({ userId: u.id, username: u.username, action: 'password.change', target: u.username, outcome: 'failed', ip: clientIp(req) });
      throw new HttpError(400, 'the current password is wrong');
    }
    await web.users.setPassword(u.id, next, req.session!.tokenHash);
    await web.audit.record({ userId: u.id, username: u.username, action: 'password.change', target: u.username, outcome: 'ok', ip: clientIp(req) });
  }

  // ---- pages
  app.get(
    '/login',
    {
      config: { access: 'public' },
      schema: { hide: true, querystring: { type: 'object', properties: { next: { type: 'string', maxLength: 500 }, done: { type: 'string', maxLength: 20 } } }, response: html200 },
    },
    async (req, reply) => {
      const q = req.query as { next?: string };
      if (req.session) return reply.redirect(safeNext(q.next), 303);
      return loginPage(req, reply, { next: safeNext(q.next), flash: flashOf(req.query, { out: 'You are signed out.', password: 'Password changed: sign in again.' })?.text ?? null });
    },
  );

  app.post(
    '/login',
    {
      config: { access: 'public' },
      schema: {
        hide: true,
        body: {
          type: 'object',
          properties: { username: { type: 'string', maxLength: 64 }, password: { type: 'string', maxLength: MAX_PASSWORD }, next: { type: 'string', maxLength: 500 }, _csrf: { type: 'string' } },
          required: ['username', 'password'],
        },
        response: html200,
      },
    },
    async (req, reply) => {
      const b = req.body as { username: string; password: string; next?: string };
      const next = safeNext(b.next);
      const ok = await signIn(req, reply, b.username, b.password);
      if (!ok) return loginPage(req, reply, { next, error: 'Wrong username or password.', username: b.username.slice(0, 64), status: 401 });
      return reply.redirect(next, 303);
    },
  );

  app.post(
    '/logout',
    { config: { access: 'user' }, schema: { hide: true, body: { type: 'object', properties: { _csrf: { type: 'string' } } }, response: html200 } },
    async (req, reply) => {
      await signOut(req, reply);
      return reply.redirect('/login?done=out', 303);
    },
  );

  const passwordForm = (req: FastifyRequest, reply: FastifyReply, error?: string, status = 200) =>
    sendPage(req, reply, { title: 'Change password', status, flash: error ? { kind: 'error', text: error } : flashOf(req.query, { changed: 'Password changed. Your other sessions were signed out.' }) }, (csrf) =>
      html`<div class="card"><h1>Change password</h1><p class="sub">At least 12 characters. Changing it signs out your other sessions.</p>
<form method="post" action="/account/password" class="stack">${csrfField(csrf)}
  <label>Current password <input type="password" name="current" autocomplete="current-password" required maxlength="${MAX_PASSWORD}"></label>
  <label>New password <input type="password" name="password" autocomplete="new-password" required minlength="12" maxlength="${MAX_PASSWORD}"></label>
  <label>New password again <input type="password" name="confirm" autocomplete="new-password" required minlength="12" maxlength="${MAX_PASSWORD}"></label>
  <button type="submit">Change password</button>
</form></div>`,
    );

  app.get(
    '/account/password',
    { config: { access: 'user' }, schema: { hide: true, querystring: { type: 'object', properties: { done: { type: 'string', maxLength: 20 } } }, response: html200 } },
    async (req, reply) => passwordForm(req, reply),
  );

  app.post(
    '/account/password',
    {
      config: { access: 'user' },
      schema: {
        hide: true,
        body: {
          type: 'object',
          properties: { current: { type: 'string', maxLength: MAX_PASSWORD }, password: { type: 'string', maxLength: MAX_PASSWORD }, confirm: { type: 'string', maxLength: MAX_PASSWORD }, _csrf: { type: 'string' } },
          required: ['current', 'password', 'confirm'],
        },
        response: html200,
      },
    },
    async (req, reply) => {
      const b = req.body as { current: string; password: string; confirm: string };
      if (b.password !== b.confirm) return passwordForm(req, reply, 'The two new passwords differ.', 400);
      try {
        await changePassword(req, reply, b.current, b.password);
      } catch (e) {
        if (e instanceof HttpError || e instanceof UserError) return passwordForm(req, reply, e.message, e instanceof HttpError ? e.statusCode : 400);
        throw e;
      }
      return reply.redirect('/account/password?done=changed', 303);
    },
  );

  // ---- API
  const tags = ['session'];
  app.post(
    '/api/v1/session',
    {
      config: { access: 'public', csrf: false },
      schema: {
        tags,
        summary: 'Sign in',
        description: 'Starts a session (cookie) and returns the CSRF token to send with state-changing calls. Rate-limited per client IP and per account, one budget shared with the login form (default 10 a minute each). Public.',
        security: [],
        body: {
          type: 'object',
          properties: { username: { type: 'string', minLength: 1, maxLength: 64 }, password: { type: 'string', minLength: 1, maxLength: MAX_PASSWORD } },
          required: ['username', 'password'],
          additionalProperties: false,
        },
        response: { 200: sessionSchema, ...errors },
      },
    },
    async (req, reply) => {
      const b = req.body as { username: string; password: string };
      const s = await signIn(req, reply, b.username, b.password);
      if (!s) throw new HttpError(401, 'wrong username or password');
      return { user: userJson(s.user), csrfToken: csrfToken(req, reply, s.tokenHash), expiresAt: isoZ(Math.floor(s.expiresAtMs / 1000)) };
    },
  );

  app.get(
    '/api/v1/session',
    { config: { access: 'user' }, schema: { tags, summary: 'Who am I', description: 'The signed-in user and a fresh CSRF token. Any role.', response: { 200: sessionSchema, ...errors } } },
    async (req, reply) => ({ user: userJson(userOf(req)), csrfToken: csrfToken(req, reply), expiresAt: isoZ(Math.floor(req.session!.expiresAtMs / 1000)) }),
  );

  app.delete(
    '/api/v1/session',
    { config: { access: 'user' }, schema: { tags, summary: 'Sign out', description: 'Ends this session. Any role; needs x-csrf-token.', security: [{ session: [], csrf: [] }], response: { 204: { type: 'null' }, ...errors } } },
    async (req, reply) => {
      await signOut(req, reply);
      return reply.code(204).send();
    },
  );

  app.post(
    '/api/v1/session/password',
    {
      config: { access: 'user' },
      schema: {
        tags,
        summary: 'Change my password',
        description: 'At least 12 characters, not the username. Ends the user’s other sessions. Any role; needs x-csrf-token.',
        security: [{ session: [], csrf: [] }],
        body: {
          type: 'object',
          properties: { currentPassword: { type: 'string', maxLength: MAX_PASSWORD }, newPassword: { type: 'string', maxLength: MAX_PASSWORD } },
          required: ['currentPassword', 'newPassword'],
          additionalProperties: false,
        },
        response: { 204: { type: 'null' }, ...errors },
      },
    },
    async (req, reply) => {
      const b = req.body as { currentPassword: string; newPassword: string };
      await changePassword(req, reply, b.currentPassword, b.newPassword);
      return reply.code(204).send();
    },
  );
}
