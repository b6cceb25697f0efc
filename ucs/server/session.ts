/**
 * The session routes: what the session cookie is worth, keeping it alive on user activity, logging out.
 * They take no input but the cookie (a body, if any, is ignored).
 * @module
 */
import type { FastifyInstance } from 'fastify';
import { COOKIE, sessionOf } from './context.js';
import { okReply, replies, sessionReply } from './schemas.js';

/**
 * Registers `/api/session`, `/api/session/touch` and `/api/logout`.
 * @example
 * ```ts
 * await app.register(sessionRoutes);
 * ```
 */
export async function sessionRoutes(app: FastifyInstance): Promise<void> {
  const ctx = app.ucs;
  const reply = (s: { household: string; expiresAt: number }) => ({ household: s.household, expiresAt: s.expiresAt, idleS: ctx.idleS });

  app.get('/api/session', { schema: { response: replies(sessionReply) } }, async (req) => reply(sessionOf(ctx, req, false)));
  app.post('/api/session/touch', { schema: { response: replies(sessionReply) } }, async (req) => reply(sessionOf(ctx, req, true)));
  app.post('/api/logout', { schema: { response: replies(okReply) } }, async (req, res) => {
    const token = req.cookies[COOKIE];
    if (token) ctx.db.endSession(token);
    void res.clearCookie(COOKIE, { path: '/' });
    return { ok: true };
  });
}
